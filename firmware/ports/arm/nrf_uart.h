/*
 * nrf_uart.h: the legacy UART0 of Nordic's nRF51 and nRF52 (the same registers at 0x40002000),
 * shared by board_nrf51.c (micro:bit) and board_nrf52.c (Nano 33 BLE). nrf_uart.c holds the
 * arm_board.h UART functions of both; arm.mk compiles it for MACHINE nrf51 and nrf52.
 */
#ifndef NRF_UART_H
#define NRF_UART_H

#include <stdint.h>

/* Start UART0, 8N1, no flow control, at the nearest listed BAUDRATE at or above `baud`, on
 * the given PSEL.TXD / PSEL.RXD values (nRF51: the pin; nRF52: pin | port << 5). */
void nrf_uart_start(uint32_t psel_txd, uint32_t psel_rxd, uint32_t baud);

#endif /* NRF_UART_H */
