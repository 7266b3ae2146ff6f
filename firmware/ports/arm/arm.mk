# Build a kws sketch folder (kws export: kernel, protocol, model_data.h, kws_config.h) into
# firmware for a Cortex-M machine with Debian's arm-none-eabi-gcc and newlib (nano), no IDE.
# The board profile's values come from kws/targets/arm/profiles.py, which `kws build` passes:
#
#   make -f firmware/ports/arm/arm.mk SKETCH=build/fw/src/kws_sketch BUILD=build/arm \
#        BOARD=mps2-an386 CPU=cortex-m4 MACHINE=mps2 F_CPU=25000000 BAUD=115200 \
#        FLASH_MAX=4194304 RAM_MAX=4194304 [ICOUNT_SHIFT=10 SEMIHOSTING=1]   # (the simulator's)
#
# Sources: every *.c of the sketch folder (the kernel and the protocol, unchanged) and this
# port's startup.c, main.c and board_$(MACHINE).c (nRF51/52: and nrf_uart.c); linker script
# ld/$(MACHINE).ld.
# ARDUINO=1 (MPS2 only): the sketch's <name>.ino (arduino/template.ino, the Arduino-API main
# for the real boards) as C++ instead of main.c, on the minimal Arduino API of arduino_mps2/.
# Outputs in $(BUILD): <name>.elf, .bin, .hex, and a size report like avr.mk's:
#   "size: flash 1234 / 4194304 bytes (0.0%), ram 184 / 4194304 bytes (0.0%), stack 8192"
# flash = .text + .ARM.exidx + .data, ram = .data + .bss (static; the stack is reserved apart).
# Every object depends on $(BUILD)/flags.txt, rewritten only when the flags change.
# MACHINE=rp2040 (the Pico) adds the second-stage boot: boot2_rp2040.c compiled and linked on
# its own, its CRC appended by kws/targets/arm/boot2.py ($(PYTHON), standard library only)
# into a generated C array in section .boot2, which ld/rp2040.ld puts at 0x10000000.

PORT_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

REQUIRED := SKETCH BOARD CPU MACHINE F_CPU BAUD FLASH_MAX RAM_MAX
$(foreach v,$(REQUIRED),$(if $($(v)),,$(error arm.mk: set $(v)= (kws/targets/arm/profiles.py))))

STACK    ?= 8192
OPT      ?= -O2
CC       := arm-none-eabi-gcc
CXX      := arm-none-eabi-g++
OBJCOPY  := arm-none-eabi-objcopy
SIZE     := arm-none-eabi-size

SKETCH := $(patsubst %/,%,$(SKETCH))
NAME   := $(notdir $(SKETCH))
BUILD  ?= build/fw/$(NAME)-$(BOARD)
BUILD  := $(patsubst %/,%,$(BUILD))

ARCH     = -mcpu=$(CPU) -mthumb -mfloat-abi=soft
CPPFLAGS = -DF_CPU=$(F_CPU)UL -DKWS_BAUD=$(BAUD)UL -DKWS_MACHINE_$(shell echo $(MACHINE) | tr a-z- A-Z_) \
           $(if $(ICOUNT_SHIFT),-DKWS_ICOUNT_SHIFT=$(ICOUNT_SHIFT)) \
           $(if $(SEMIHOSTING),-DKWS_SEMIHOSTING) \
           -I$(SKETCH) -I$(PORT_DIR) $(EXTRA_CPPFLAGS)
CFLAGS   = $(ARCH) $(OPT) -g -std=c99 -ffunction-sections -fdata-sections -Wall -Wextra \
           -MMD -MP
CXXFLAGS = $(ARCH) $(OPT) -g -std=gnu++11 -fno-exceptions -fno-rtti -fno-threadsafe-statics \
           -ffunction-sections -fdata-sections -Wall -Wextra -MMD -MP
LDFLAGS  = $(ARCH) $(OPT) -nostartfiles --specs=nano.specs --specs=nosys.specs \
           -Wl,--gc-sections -L$(PORT_DIR)/ld -T$(MACHINE).ld -Wl,--defsym=_stack_size=$(STACK)

SRCS := $(wildcard $(SKETCH)/*.c) $(PORT_DIR)/startup.c $(PORT_DIR)/board_$(MACHINE).c
# the Nordic chips' shared UART0 (nrf_uart.c)
SRCS += $(if $(filter nrf51 nrf52,$(MACHINE)),$(PORT_DIR)/nrf_uart.c)
ifeq ($(ARDUINO),1)
CXX_SRCS := $(SKETCH)/$(NAME).ino $(PORT_DIR)/arduino_$(MACHINE)/Arduino.cpp
# linked as C: no libstdc++ (Debian has no nano one), the sketch needs no new, RTTI, exceptions
LINK     := $(CC)
CPPFLAGS += -I$(PORT_DIR)/arduino_$(MACHINE)
else
SRCS     += $(PORT_DIR)/main.c
LINK     := $(CC)
endif
OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(notdir $(SRCS))) \
        $(patsubst %,$(BUILD)/obj/%.o,$(notdir $(CXX_SRCS)))
ifeq ($(MACHINE),rp2040)
PYTHON   ?= python3
# kws passes its own copy (an installed kws has firmware/ in kws/_firmware/); this: a checkout's
BOOT2_PY ?= $(PORT_DIR)/../../../kws/targets/arm/boot2.py
OBJS     += $(BUILD)/obj/boot2_block.o
endif
vpath %.c $(SKETCH) $(PORT_DIR)
vpath %.ino $(SKETCH)
vpath %.cpp $(PORT_DIR)/arduino_$(MACHINE)

ELF := $(BUILD)/$(NAME).elf
BIN := $(BUILD)/$(NAME).bin
HEX := $(BUILD)/$(NAME).hex
FLAGS_STAMP := $(BUILD)/flags.txt

.PHONY: all size clean FORCE
.DELETE_ON_ERROR:

all: $(HEX) $(BIN) size

COMMIT = && mv -f $@.tmp $@
FLAGS_TEXT = $(CC) $(CPPFLAGS) | $(CFLAGS) | $(CXXFLAGS) | $(LDFLAGS) | $(ARDUINO)
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@printf '%s\n' '$(subst ','\'',$(FLAGS_TEXT))' | cmp -s - $@ || \
	  printf '%s\n' '$(subst ','\'',$(FLAGS_TEXT))' > $@

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MT $@ -MF $(@:.o=.d) -c $< -o $@.tmp $(COMMIT)

$(BUILD)/obj/%.ino.o: %.ino $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -x c++ -include Arduino.h -MT $@ -MF $(@:.o=.d) -c $< -o $@.tmp $(COMMIT)
$(BUILD)/obj/%.cpp.o: %.cpp $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -MT $@ -MF $(@:.o=.d) -c $< -o $@.tmp $(COMMIT)

# the RP2040's boot2: position-independent code run from SRAM, 252 bytes at most + CRC
$(BUILD)/boot2/boot2.elf: $(PORT_DIR)/boot2_rp2040.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) -mcpu=cortex-m0plus -mthumb -Os -std=c99 -Wall -Wextra -ffreestanding -nostdlib \
	  -nostartfiles -Wl,-e,rp2040_boot2 -Wl,-Ttext=0x20041f00 $< -o $@.tmp $(COMMIT)
$(BUILD)/boot2/boot2.bin: $(BUILD)/boot2/boot2.elf
	$(OBJCOPY) -O binary -j .text $< $@.tmp $(COMMIT)
$(BUILD)/boot2/boot2_block.c: $(BUILD)/boot2/boot2.bin $(BOOT2_PY)
	$(PYTHON) $(BOOT2_PY) $< $@.tmp $(COMMIT)
$(BUILD)/obj/boot2_block.o: $(BUILD)/boot2/boot2_block.c
	@mkdir -p $(@D)
	$(CC) $(ARCH) -c $< -o $@.tmp $(COMMIT)

$(ELF): $(OBJS) $(PORT_DIR)/ld/$(MACHINE).ld $(PORT_DIR)/ld/sections.ld
	$(LINK) $(LDFLAGS) -o $@.tmp $(OBJS) -lgcc $(COMMIT)

$(HEX): $(ELF)
	$(OBJCOPY) -O ihex $< $@.tmp $(COMMIT)
$(BIN): $(ELF)
	$(OBJCOPY) -O binary $< $@.tmp $(COMMIT)

size: $(ELF)
	@$(SIZE) -A $< | awk -v fmax=$(FLASH_MAX) -v rmax=$(RAM_MAX) -v stack=$(STACK) \
	  '$$1 ~ /^\.(text|ARM\.exidx|data)$$/ { f += $$2 } \
	   $$1 ~ /^\.(data|bss)$$/            { r += $$2 } \
	   END { printf "size: flash %d / %d bytes (%.1f%%), ram %d / %d bytes (%.1f%%), stack %d\n", \
	         f, fmax, 100*f/fmax, r, rmax, 100*r/rmax, stack; \
	         if (f > fmax) { print "arm.mk: firmware too big for $(BOARD): flash over by " f - fmax " bytes" > "/dev/stderr"; exit 1 } \
	         if (r + stack > rmax) { print "arm.mk: firmware too big for $(BOARD): RAM (static + stack) over by " r + stack - rmax " bytes" > "/dev/stderr"; exit 1 } }'

clean:
	rm -rf $(BUILD)

-include $(OBJS:.o=.d)
