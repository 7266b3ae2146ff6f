// The Arduino API of arduino_mps2/Arduino.h on the MPS2 board (board_mps2.c), and main():
// setup(), then loop() for ever, sleeping (WFI) while no byte waits. LED_BUILTIN is FPGAIO
// LED0. micros() counts the 25 MHz timer (under QEMU -icount: virtual time).
#include "Arduino.h"

extern "C" {
#include "arm_board.h"
}

#define FPGAIO_LED (*(volatile uint32_t *)0x40028000u)

ArduinoSerial Serial;

void pinMode(uint8_t, uint8_t) {}

void digitalWrite(uint8_t pin, uint8_t value) {
  if (pin == LED_BUILTIN) FPGAIO_LED = value ? (FPGAIO_LED | 1u) : (FPGAIO_LED & ~1u);
}

unsigned long micros(void) { return arm_ticks() / (arm_f_cpu() / 1000000u); }

void ArduinoSerial::begin(unsigned long baud) { arm_board_init((uint32_t)baud); }
int ArduinoSerial::available(void) { return arm_uart_available(); }
int ArduinoSerial::read(void) { return arm_uart_available() ? arm_uart_getc() : -1; }
size_t ArduinoSerial::write(uint8_t b) {
  arm_uart_putc(b);
  return 1;
}
size_t ArduinoSerial::write(const uint8_t *data, size_t n) {
  for (size_t i = 0; i < n; i++) arm_uart_putc(data[i]);
  return n;
}

int main(void) {
  __asm__ volatile("cpsid i" ::: "memory");
  setup();
  for (;;) {
    loop();
    if (!Serial.available()) arm_uart_wait();
  }
}
