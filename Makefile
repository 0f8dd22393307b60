# ClinicBot. The two commands a newcomer needs:  `make run`  (the local system)  and  `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen --no-sync
REQS := layers/clinicbot/requirements.txt

.PHONY: help setup run test lint typecheck requirements check-requirements pytest sam-build bench invoke set-commands clean

help:
	@echo "make run          run ClinicBot locally: moto, demo clinic, webhook function, terminal chat"
	@echo "make test         everything CI runs: lock/requirements check, ruff, mypy, tests, sam build"
	@echo "make invoke FN=webhook EVENT=events/webhook/start.json   invoke one function with one event"
	@echo "make bench        print the benchmarks' figures"
	@echo "make requirements regenerate $(REQS) from uv.lock"

$(UV):
	python3 -m pip install --quiet --user "uv==$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"

setup: $(UV)
	$(UV) sync --frozen --quiet

run: setup
	$(RUN) python -m clinicbot local

test: setup check-requirements lint typecheck pytest sam-build

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck:
	$(RUN) mypy

requirements: $(UV)
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes --no-header --quiet -o $(REQS)

check-requirements: $(UV)
	$(UV) lock --check
	@diff <($(UV) export --frozen --no-dev --no-emit-project --no-hashes --no-header --quiet) $(REQS) \
		|| { echo "$(REQS) drifted from uv.lock: run 'make requirements'" >&2; exit 1; }

pytest:
	$(RUN) pytest -n 2 --dist loadfile

sam-build:
	scripts/sam-build.sh

bench: setup
	$(RUN) python -m bench.cold_start
	$(RUN) python -m bench.dialogue
	$(RUN) python -m bench.sync --layer
	$(RUN) python -m bench.reminders

invoke: setup
	$(RUN) python -m clinicbot invoke $(FN) $(EVENT)

set-commands: setup
	$(RUN) python -m clinicbot set-commands

clean:
	rm -rf .aws-sam build .venv
