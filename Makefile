# Tiny keyword spotting: `make demo` runs the pipeline offline, `make test` runs the tests.
# Both install what they need first (`make setup`, idempotent).

SHELL      := /bin/bash
PYTHON     ?= python3.11
VENV       := .venv
PY         := $(VENV)/bin/python
KWS        := $(VENV)/bin/kws
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PKGS   := gcc-avr avr-libc arduino-core-avr libsimavr-dev avrdude libportaudio2 \
              espeak-ng clang libclang-rt-14-dev \
              gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
CONFIG     ?= configs/default.yaml
SYNTH_DIR  ?= data/synth
SYNTH_CLIPS ?= 7000

.PHONY: setup apt venv demo train train-5k wake sentences levers eval firmware flash verify stream test fuzz bench clean help

help:
	@echo "make demo   - offline end-to-end run on the synthetic corpus"
	@echo "make train  - train and ship models/default (RESUME=1 to continue a run)"
	@echo "make train-5k - train and ship models/default_5k, the 5.5 KB model for boards with room"
	@echo "make wake   - train, mine hard negatives three times, ship and evaluate models/wake_stop"
	@echo "make eval   - evaluate models/default (DATA=folder)"
	@echo "make test   - the test suite"
	@echo "make bench  - benchmarks into bench/results.json"
	@echo "make sentences - keyword-free synthetic speech for false accepts (data/sentences)"
	@echo "make setup  - Debian packages + .venv (done by the targets above)"

setup: apt venv

# Debian packages: only touches apt when one is missing, so it is fast and offline once done.
apt:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

# torch first and pinned: the CPU wheel. An unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# Offline end to end: synthetic corpus -> features -> short training -> integer model ->
# firmware -> every frame of 300 held-out clips on 2 simulated boards, and of 100 on a simulated
# Cortex-M4 (QEMU) -> report (after verify, so it holds the device's figures) -> the last
# screen (`kws summary`: what the run was).
demo: setup
	$(KWS) data synth --out $(SYNTH_DIR) --clips $(SYNTH_CLIPS)
	$(KWS) data stats --data $(SYNTH_DIR) --config configs/demo.yaml
	$(KWS) features --data $(SYNTH_DIR) --config configs/demo.yaml
	$(KWS) train --config configs/demo.yaml --name demo --run-dir build/demo/run \
	  --out build/demo/model --resume
	$(KWS) build --model build/demo/model --out build/demo/fw
	$(KWS) verify --model build/demo/model --data $(SYNTH_DIR) --board sim --boards 2 \
	  --max-clips 300 --json build/demo/verify.json
	$(KWS) verify --model build/demo/model --data $(SYNTH_DIR) --board sim --profile mps2-an386 \
	  --max-clips 100 --json build/demo/verify-arm.json
	$(KWS) eval --model build/demo/model --data $(SYNTH_DIR) --json build/demo/eval.json \
	  --out build/demo/report
	$(KWS) summary build/demo

# Train the shipped model: the synthetic corpus and a pre-training run on it, the float GRU
# teacher on the dev + extra clips with balanced epochs (each kept and reused once done), then
# configs/default.yaml -> runs/default, models/default. RESUME=1 continues an interrupted run.
train: setup
	$(KWS) data synth --out $(SYNTH_DIR) --clips $(SYNTH_CLIPS)
	$(KWS) train --config configs/synth_pretrain.yaml --resume
	$(KWS) train --config configs/teacher_balanced.yaml --resume
	$(KWS) train --config $(CONFIG) $(if $(RESUME),--resume)

# The 5.5 KB model for boards with room (configs/default_5k.yaml): the same synthetic corpus,
# pre-training at its shape, a GRU teacher on the dev + extra clips with balanced epochs, the model.
train-5k: setup
	$(KWS) data synth --out $(SYNTH_DIR) --clips $(SYNTH_CLIPS)
	$(KWS) train --config configs/synth_pretrain_h72.yaml --resume
	$(KWS) train --config configs/teacher_balanced.yaml --resume
	$(KWS) train --config configs/default_5k.yaml $(if $(RESUME),--resume)

# The wake-word model "stop" (configs/wake_stop.yaml): stream cuts, then three rounds of hard
# negatives (each round mines the last model's false accepts on the training speakers of the
# keyword-free audio, then fine-tunes; round 3 also mines the synthetic sentences), then the
# listening settings chosen on validation speakers (windows in flight 2 or 3 - what fits the
# Uno - and smoothing 1 to 3) and the held-out figures, counting false accepts on the real
# keyword-free audio and the synthetic sentences.
NEGATIVES ?= ../shared/data/negatives/speech ../shared/data/negatives/wakewords
WAKE_DATA ?= ../shared/data/speech_commands_dev ../shared/data/speech_commands_extra
wake: setup sentences
	$(KWS) train --config configs/wake/w1_cut.yaml --out runs/wake-models/w1_cut --resume
	$(KWS) mine --model runs/wake-models/w1_cut $(addprefix --negatives ,$(NEGATIVES)) \
	  --out data/mined/w1_cut --windows 1500 --min-score 0.05
	$(KWS) train --config configs/wake/w2_cut_mined.yaml --out runs/wake-models/w2_cut_mined --resume
	$(KWS) mine --model runs/wake-models/w2_cut_mined $(addprefix --negatives ,$(NEGATIVES)) \
	  --out data/mined/w2_cut_mined --windows 1500 --min-score 0.05
	$(KWS) train --config configs/wake/w3_cut_mined2.yaml --out runs/wake-models/w3_cut_mined2 --resume
	$(KWS) mine --model runs/wake-models/w3_cut_mined2 \
	  $(addprefix --negatives ,$(NEGATIVES) $(SENTENCES)) \
	  --out data/mined/w3_cut_mined2 --windows 1500 --min-score 0.05
	$(KWS) train --config configs/wake_stop.yaml $(if $(RESUME),--resume)
	$(KWS) eval --model models/wake_stop $(addprefix --data ,$(WAKE_DATA)) --stream \
	  --instances 2,3 --smooth 1,2,3 $(addprefix --negatives ,$(NEGATIVES) $(SENTENCES)) \
	  --out docs/report_wake

# The lever table and the accuracy-vs-bytes curve (about an hour on 2 cores; resumable).
levers: setup
	$(KWS) data synth --out $(SYNTH_DIR) --clips $(SYNTH_CLIPS)
	$(KWS) train --config configs/synth_pretrain.yaml --resume
	$(KWS) train --config configs/teacher.yaml --resume
	$(KWS) train --config configs/teacher10.yaml --resume
	$(KWS) train --config configs/synth_pretrain32.yaml --resume
	$(KWS) sweep configs/levers/*.yaml --out runs/levers

# Firmware for a board profile (uno nano nano-old pro-mini-16 pro-mini-8) and upload with avrdude.
MODEL ?= models/default
BOARD ?= uno
FW_BOARD = $(if $(filter sim,$(BOARD)),uno,$(BOARD))
firmware: setup
	$(KWS) build --model $(MODEL) --board $(FW_BOARD)

# BOARD=sim: avrdude flashes a simulated Uno through its optiboot bootloader
flash: firmware
	$(KWS) flash --board $(BOARD)$(if $(PORT), --port $(PORT)) \
	  --hex build/fw/kws_sketch-$(FW_BOARD)/kws_sketch.hex

# Every held-out frame through a board (PORT=... for a real one, else two simulated boards).
# Data: DATA=folder, else the archive `kws data download` put in data/, else the dev clips.
verify: setup
	$(KWS) verify --model $(MODEL) $(if $(DATA),--data $(DATA)) \
	  --board $(or $(PORT),sim) --boards $(if $(PORT),1,2) --json build/verify.json

# Live: the microphone through a board (PORT=... or the simulated one). WAV=file streams a file.
stream: setup
	$(KWS) stream --model $(MODEL) --board $(or $(PORT),sim) $(if $(WAV),--wav $(WAV),--mic)

eval: setup
	$(KWS) eval --model $(MODEL) $(if $(DATA),--data $(DATA))

test: setup
	$(PY) -m pytest

# The protocol fuzzer (firmware/fuzz/): the firmware's decoder + dispatcher under libFuzzer, ASan
# and UBSan for FUZZ_SECONDS in all (default 300); `make test` runs a 60 s one (KWS_FUZZ_SECONDS).
fuzz: setup
	$(MAKE) -C firmware/fuzz run PY=$(abspath $(PY)) FUZZ_SECONDS=$(or $(FUZZ_SECONDS),300)

bench: setup sentences
	$(KWS) bench --out bench/results.json

# Keyword-free synthetic running speech (about 67 min, deterministic): more negative audio for
# false accepts per hour, beside the real recordings (kws/data/sentences.py).
SENTENCES ?= data/sentences
sentences: setup
	$(KWS) data sentences --out $(SENTENCES) --minutes 60

clean:
	rm -rf build runs .pytest_cache
