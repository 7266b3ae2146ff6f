// echo: the smallest sketch for testing the build and the simulated board.
//  - prints nothing on boot;
//  - answers every received byte b with b + 1 (so a test can tell an echo from a loopback);
//  - on 'T' it first marks a timed region for the simulator's GPIOR0 hook: GPIOR0 = 1,
//    exactly 1000 cycles of busy wait with interrupts off, GPIOR0 = 2;
//  - GPIOR1 = 1 once Serial is listening (the simulator stamps it);
//  - sleeps (idle mode) while there is no input: the next interrupt (a received byte, or
//    Timer0's millis() tick every 1.024 ms) wakes it. Saves power on a board, and lets
//    the simulator wait for the host instead of spinning at 100% CPU.
#include <avr/sleep.h>
#include <avr/wdt.h>

// Runs before main(): optiboot leaves the watchdog armed after a watchdog reset, and the
// app would then reset-loop (docs/ARCHITECTURE.md, AVR port). Naked and in .init3: no prologue, no ret.
void kws_wdt_off(void) __attribute__((naked, used, section(".init3")));
void kws_wdt_off(void) {
  MCUSR = 0;
  wdt_disable();
}

void setup() {
  Serial.begin(KWS_BAUD);
  GPIOR1 = 1;
}

// Sleep unless input is waiting; cli..sei+sleep so a byte arriving in between still wakes us
// (the instruction after sei always runs before an interrupt).
static void idle_until_input() {
  set_sleep_mode(SLEEP_MODE_IDLE);
  cli();
  if (!Serial.available()) {
    sleep_enable();
    sei();
    sleep_cpu();
    sleep_disable();
  }
  sei();
}

void loop() {
  int c = Serial.read();
  if (c < 0) {
    idle_until_input();
    return;
  }
  if (c == 'T') {
    uint8_t sreg = SREG;
    cli();  // no Timer0 or UART interrupt inside the timed region
    GPIOR0 = 1;
    __builtin_avr_delay_cycles(1000);
    GPIOR0 = 2;
    SREG = sreg;
  }
  Serial.write((uint8_t)(c + 1));
}
