# Build an Arduino sketch folder for the ATmega328P against Debian's Arduino core
# (package arduino-core-avr), without the Arduino IDE, arduino-cli or arduino-mk.
#
#   make -f firmware/ports/avr/avr.mk SKETCH=firmware/ports/avr/examples/echo BUILD=build/echo BOARD=uno
#   make -f firmware/ports/avr/avr.mk SKETCH=... BUILD=... flash PORT=/dev/ttyACM0
#   make -f firmware/ports/avr/avr.mk sim                # the simulated board, build/sim/kws-sim
#   make -s -f firmware/ports/avr/avr.mk BOARD=pro-mini-8 print-BAUD     # -> 57600
#
# Sketch folder <dir>/<name>/: <name>.ino (compiled as C++ with Arduino.h included first, like
# the IDE does, but without its prototype generation: declare functions before use), plus any
# *.c / *.cpp / *.S in the folder and, recursively, in its src/ subfolder (the IDE's rules).
# EXTRA_SRCS (files anywhere) and EXTRA_CPPFLAGS (e.g. -Ifirmware/kernels) are added as given.
#
# Outputs in $(BUILD): core.a, <name>.elf, <name>.hex (flash only), and a size report:
#   "size: flash 1234 / 32256 bytes (3.8%), ram 184 / 2048 bytes (9.0%)"
# Every object depends on $(BUILD)/flags.txt, which changes only when the flags do, so
# switching BOARD or F_CPU in the same BUILD rebuilds everything; -j is safe.

FW_DIR   := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
ARDUINO  ?= /usr/share/arduino/hardware/arduino/avr
CORE_DIR := $(ARDUINO)/cores/arduino

# ---- boards: F_CPU, serial/upload baud, ARDUINO_<board> define, variant, flash limit, and the
# pin the on-board detector drives on a detection (an Arduino pin number or name) --------------
BOARD ?= uno
BOARDS := uno nano nano-old pro-mini-16 pro-mini-8

uno_F_CPU         := 16000000L
uno_BAUD          := 115200
uno_DEF           := AVR_UNO
uno_VARIANT       := standard
uno_FLASH         := 32256
uno_DETECT_PIN    := LED_BUILTIN
nano_F_CPU        := 16000000L
nano_BAUD         := 115200
nano_DEF          := AVR_NANO
nano_VARIANT      := eightanaloginputs
nano_FLASH        := 30720
nano_DETECT_PIN   := LED_BUILTIN
nano-old_F_CPU    := 16000000L
nano-old_BAUD     := 57600
nano-old_DEF      := AVR_NANO
nano-old_VARIANT  := eightanaloginputs
nano-old_FLASH    := 30720
nano-old_DETECT_PIN := LED_BUILTIN
pro-mini-16_F_CPU   := 16000000L
pro-mini-16_BAUD    := 57600
pro-mini-16_DEF     := AVR_PRO
pro-mini-16_VARIANT := eightanaloginputs
pro-mini-16_FLASH   := 30720
pro-mini-16_DETECT_PIN := LED_BUILTIN
pro-mini-8_F_CPU    := 8000000L
pro-mini-8_BAUD     := 57600
pro-mini-8_DEF      := AVR_PRO
pro-mini-8_VARIANT  := eightanaloginputs
pro-mini-8_FLASH    := 30720
pro-mini-8_DETECT_PIN := LED_BUILTIN

ifeq ($(filter $(BOARD),$(BOARDS)),)
$(error unknown BOARD '$(BOARD)'; one of: $(BOARDS))
endif

MCU         := atmega328p
F_CPU       := $($(BOARD)_F_CPU)
# BAUD is both the sketch's serial speed (-DKWS_BAUD) and the bootloader's upload speed.
BAUD        := $($(BOARD)_BAUD)
UPLOAD_BAUD := $(BAUD)
VARIANT     := $($(BOARD)_VARIANT)
FLASH_MAX   := $($(BOARD)_FLASH)
# the profile's detection pin; `make ... DETECT_PIN=7` overrides it for one build
DETECT_PIN  ?= $($(BOARD)_DETECT_PIN)
RAM_MAX     := 2048
# F_CPU without the L suffix, for tools (simulator --freq)
F_CPU_HZ    := $(F_CPU:L=)
export F_CPU

# ---- tools and flags (docs/ARCHITECTURE.md, AVR port) ---------------------------------------
CC      := avr-gcc
CXX     := avr-g++
AR      := avr-gcc-ar
OBJCOPY := avr-objcopy
OBJDUMP := avr-objdump
SIZE    := avr-size
AVRDUDE ?= avrdude

CPPFLAGS = -mmcu=$(MCU) -DF_CPU=$(F_CPU) -DARDUINO=10819 -DARDUINO_$($(BOARD)_DEF) \
           -DARDUINO_ARCH_AVR -DKWS_BAUD=$(BAUD) -DKWS_BOARD_$(subst -,_,$(BOARD)) \
           -DKWS_DETECT_PIN=$(DETECT_PIN) \
           -I$(CORE_DIR) -I$(ARDUINO)/variants/$(VARIANT) $(EXTRA_CPPFLAGS)
COMMON   = -Os -g -flto -ffunction-sections -fdata-sections -MMD -MP
CFLAGS   = $(COMMON) -std=gnu11
# Debian's avr-gcc 5.4 lacks DECIMAL_DIG in C++ mode; WString.cpp needs it.
CXXFLAGS = $(COMMON) -std=gnu++11 -fpermissive -fno-exceptions -fno-threadsafe-statics \
           -Wno-error=narrowing -DDECIMAL_DIG=__DECIMAL_DIG__
ASFLAGS  = -g -flto -MMD -MP -x assembler-with-cpp
LDFLAGS  = -mmcu=$(MCU) -Os -g -flto -fuse-linker-plugin -Wl,--gc-sections
# warnings: quiet for Debian's core, on for the sketch
CORE_WARN   ?= -w
SKETCH_WARN ?= -Wall -Wextra

# ---- sources and objects ---------------------------------------------------------------------
SKETCH := $(patsubst %/,%,$(SKETCH))
NAME   := $(notdir $(SKETCH))
BUILD  ?= build/fw/$(NAME)-$(BOARD)
BUILD  := $(patsubst %/,%,$(BUILD))

CORE_SRCS := $(wildcard $(CORE_DIR)/*.c $(CORE_DIR)/*.cpp $(CORE_DIR)/*.S)
CORE_OBJS := $(patsubst $(CORE_DIR)/%,$(BUILD)/core/%.o,$(CORE_SRCS))

ifneq ($(SKETCH),)
ifeq ($(wildcard $(SKETCH)/$(NAME).ino),)
$(error avr.mk: no sketch $(SKETCH)/$(NAME).ino (a sketch folder <name>/ holds <name>.ino))
endif
SKETCH_SRCS := $(SKETCH)/$(NAME).ino $(wildcard $(SKETCH)/*.c $(SKETCH)/*.cpp $(SKETCH)/*.S) \
               $(if $(wildcard $(SKETCH)/src),$(shell find $(SKETCH)/src -name '*.c' -o -name '*.cpp' -o -name '*.S'))
endif
SKETCH_OBJS := $(patsubst $(SKETCH)/%,$(BUILD)/sketch/%.o,$(SKETCH_SRCS))
EXTRA_OBJS  := $(patsubst /%,$(BUILD)/extra/%.o,$(abspath $(EXTRA_SRCS)))
OBJS        := $(SKETCH_OBJS) $(EXTRA_OBJS)

ELF := $(BUILD)/$(NAME).elf
HEX := $(BUILD)/$(NAME).hex
LST := $(BUILD)/$(NAME).lst
FLAGS_STAMP := $(BUILD)/flags.txt

.PHONY: all size lst flash sim clean check-sketch FORCE
.DELETE_ON_ERROR:

all: $(HEX) size

check-sketch:
	@test -n "$(SKETCH)" || { echo "avr.mk: set SKETCH=path/to/sketch-folder" >&2; exit 2; }

# Every output is written as $@.tmp and renamed when complete: a killed build never leaves a
# half-written file that looks newer than its sources. The dependency file keeps the real name.
DEPS   = -MT $@ -MF $(@:.o=.d)
COMMIT = && mv -f $@.tmp $@

# Rewritten only when the flags change (make re-checks its time after the recipe).
FLAGS_TEXT = $(CC) $(CPPFLAGS) | $(CFLAGS) | $(CXXFLAGS) | $(ASFLAGS) | $(LDFLAGS) | $(SKETCH_WARN)
$(FLAGS_STAMP): FORCE | check-sketch
	@mkdir -p $(@D)
	@printf '%s\n' '$(subst ','\'',$(FLAGS_TEXT))' | cmp -s - $@ || \
	  printf '%s\n' '$(subst ','\'',$(FLAGS_TEXT))' > $@

# ---- Debian's Arduino core -> core.a ----
$(BUILD)/core/%.c.o: $(CORE_DIR)/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(CORE_WARN) $(DEPS) -c $< -o $@.tmp $(COMMIT)
$(BUILD)/core/%.cpp.o: $(CORE_DIR)/%.cpp $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) $(CORE_WARN) $(DEPS) -c $< -o $@.tmp $(COMMIT)
$(BUILD)/core/%.S.o: $(CORE_DIR)/%.S $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ASFLAGS) $(DEPS) -c $< -o $@.tmp $(COMMIT)

$(BUILD)/core.a: $(CORE_OBJS)
	@rm -f $@.tmp
	$(AR) rcs $@.tmp $^ $(COMMIT)

# ---- the sketch ----
$(BUILD)/sketch/%.ino.o: $(SKETCH)/%.ino $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) -I$(SKETCH) $(CXXFLAGS) $(SKETCH_WARN) -x c++ -include Arduino.h $(DEPS) -c $< -o $@.tmp $(COMMIT)
$(BUILD)/sketch/%.c.o: $(SKETCH)/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -I$(SKETCH) $(CFLAGS) $(SKETCH_WARN) $(DEPS) -c $< -o $@.tmp $(COMMIT)
$(BUILD)/sketch/%.cpp.o: $(SKETCH)/%.cpp $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) -I$(SKETCH) $(CXXFLAGS) $(SKETCH_WARN) $(DEPS) -c $< -o $@.tmp $(COMMIT)
$(BUILD)/sketch/%.S.o: $(SKETCH)/%.S $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -I$(SKETCH) $(ASFLAGS) $(DEPS) -c $< -o $@.tmp $(COMMIT)

# ---- EXTRA_SRCS, by absolute path ----
$(BUILD)/extra/%.c.o: /%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -I$(SKETCH) $(CFLAGS) $(SKETCH_WARN) $(DEPS) -c $< -o $@.tmp $(COMMIT)
$(BUILD)/extra/%.cpp.o: /%.cpp $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) -I$(SKETCH) $(CXXFLAGS) $(SKETCH_WARN) $(DEPS) -c $< -o $@.tmp $(COMMIT)
$(BUILD)/extra/%.S.o: /%.S $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -I$(SKETCH) $(ASFLAGS) $(DEPS) -c $< -o $@.tmp $(COMMIT)

# ---- link ----
$(ELF): $(OBJS) $(BUILD)/core.a
	$(CC) $(LDFLAGS) -o $@.tmp $(OBJS) $(BUILD)/core.a -lm $(COMMIT)

$(HEX): $(ELF)
	$(OBJCOPY) -O ihex -R .eeprom $< $@.tmp $(COMMIT)

# flash = .text + .data (+ .bootloader); RAM = .data + .bss + .noinit (the IDE's regexes)
size: $(ELF)
	@$(SIZE) -A $< | awk -v fmax=$(FLASH_MAX) -v rmax=$(RAM_MAX) \
	  '$$1 ~ /^\.(text|data|bootloader)$$/ { f += $$2 } \
	   $$1 ~ /^\.(data|bss|noinit)$$/     { r += $$2 } \
	   END { printf "size: flash %d / %d bytes (%.1f%%), ram %d / %d bytes (%.1f%%)\n", \
	         f, fmax, 100*f/fmax, r, rmax, 100*r/rmax; \
	         if (f > fmax) { print "avr.mk: sketch too big for $(BOARD)" > "/dev/stderr"; exit 1 } }'

lst: $(LST)
$(LST): $(ELF)
	$(OBJDUMP) -d -S -C $< > $@

# avrdude through the board's bootloader (docs/ARCHITECTURE.md, AVR port)
flash: $(HEX)
	@test -n "$(PORT)" || { echo "avr.mk: set PORT=/dev/ttyUSB0 (or ttyACM0)" >&2; exit 2; }
	$(AVRDUDE) -C /etc/avrdude.conf -p $(MCU) -c arduino -P $(PORT) -b $(UPLOAD_BAUD) -D \
	  -U flash:w:$(HEX):i

# the simulated board (host C program on libsimavr)
sim:
	@$(MAKE) --no-print-directory -f $(FW_DIR)/sim/Makefile

clean:
	rm -rf $(BUILD)

# make -s -f firmware/ports/avr/avr.mk BOARD=nano print-BAUD
print-%:
	@echo '$($*)'

-include $(CORE_OBJS:.o=.d) $(OBJS:.o=.d)
