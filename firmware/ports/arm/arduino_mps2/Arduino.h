/*
 * Arduino.h for the simulated MPS2 board: the part of the Arduino API that the Arm sketch
 * (firmware/ports/arm/arduino/template.ino) uses, on board_mps2.c's UART and timer, so that
 * the sketch itself runs, unchanged, on QEMU (arm.mk ARDUINO=1; tests/test_arm.py). Not an
 * Arduino core: the real boards build the sketch with theirs.
 */
#ifndef KWS_ARDUINO_MPS2_H
#define KWS_ARDUINO_MPS2_H

#include <stddef.h>
#include <stdint.h>

#define LED_BUILTIN 0
#define INPUT 0
#define OUTPUT 1
#define LOW 0
#define HIGH 1

void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t value);
unsigned long micros(void);

class ArduinoSerial {
  public:
    void begin(unsigned long baud);
    int available(void);
    int read(void);
    size_t write(uint8_t b);
    size_t write(const uint8_t *data, size_t n);
};

extern ArduinoSerial Serial;

void setup(void);
void loop(void);

#endif
