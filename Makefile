# lego-arta: every command a user needs. `make demo` and `make test` install first on a fresh machine.
# GPU users: make install-gpu (= make install TORCH_SPEC="$(GPU_TORCH_SPEC)" EXTRAS=dev,gpu)
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev
# the CUDA build of torch, and torchvision from the same index (a PyPI torchvision may be built for another CUDA)
GPU_TORCH_SPEC ?= torch==2.13.0 torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cu128
# flash-attn's build imports torch, which pip's isolated build environment lacks (flash-attention#1675: "Failed to build
# 'flash-attn' when getting requirements to build wheel"): with the gpu extra it is built against the installed torch
# (--no-build-isolation), after torch and before the package. Its version is the gpu extra's, read from pyproject.toml.
FLASH_ATTN_SPEC := $(shell sed -n '/^gpu = \[/s/.*"\(flash-attn[^"]*\)".*/\1/p' pyproject.toml)
PY := $(VENV)/bin/python
# one stamp per (torch spec, extras): another TORCH_SPEC or EXTRAS installs again instead of a silent no-op
STAMP := $(VENV)/.installed-$(shell printf '%s|%s' '$(TORCH_SPEC)' '$(EXTRAS)' | cksum | cut -d' ' -f1)
ARGS ?=
# pytest-xdist workers for make test / test-fast: one per core (each computes on one thread: tests/conftest.py)
TEST_WORKERS ?= auto

help:  ## list the targets and what each does
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

.PHONY: help install install-gpu test test-fast test-cookbook lint format demo ablation generalisation sweep report paper plan bench gpu-check dashboard clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
ifneq ($(findstring gpu,$(EXTRAS)),)
	$(PY) -m pip install --quiet packaging psutil ninja wheel setuptools
	$(PY) -m pip install --quiet --no-build-isolation "$(FLASH_ATTN_SPEC)"
endif
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed*
	touch $(STAMP)

install: $(STAMP)  ## create .venv: torch first ($(TORCH_SPEC)), [gpu: flash-attn built against it,] then the package with [$(EXTRAS)]

install-gpu:  ## CUDA torch + torchvision ($(GPU_TORCH_SPEC)), flash-attn without build isolation, then [dev,gpu]
	$(MAKE) install TORCH_SPEC="$(GPU_TORCH_SPEC)" EXTRAS=dev,gpu

test: $(STAMP)  ## the whole suite, end-to-end tiny-model runs included (the README's cookbook: make test-cookbook)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not cookbook" $(ARGS)

test-fast: $(STAMP)  ## skip the end-to-end runs
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow" $(ARGS)

test-cookbook: $(STAMP)  ## every README cookbook command, as typed, in a fresh copy of the repo (~15 min)
	$(PY) -m pytest -q -m cookbook $(ARGS)

lint: $(STAMP)  ## ruff check, ruff format --check, mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

demo: $(STAMP)  ## baseline -> SFT -> GRPO v1/v2 -> eval -> report on the tiny model + synthetic scenes
	$(PY) experiments/demo.py $(ARGS)

ablation: $(STAMP)  ## the reward ablation in the study's regime and objective: SFT in pixels -> GRPO asked for the grid, v1 vs v2 x 10 seeds
	$(PY) experiments/demo.py experiment=ablation $(ARGS)

generalisation: $(STAMP)  ## pre-stage on referring data -> LEGO SFT/GRPO, 5 seeds: does it help, does SFT forget (report: Generalisation)
	$(PY) experiments/demo.py experiment=generalisation $(ARGS)

sweep: $(STAMP)  ## the ablation multirun on the configured model: GRPO x reward=v1,v2 x seeds (experiment=reward_ablation)
	$(PY) experiments/train.py -m experiment=reward_ablation $(ARGS)

report: $(STAMP)  ## Table 1 + reward curves of the newest multirun under outputs/ (or SWEEP_DIR=...)
	$(PY) experiments/report.py $(if $(SWEEP_DIR),sweep_dir=$(SWEEP_DIR)) $(ARGS)

paper: $(STAMP)  ## the study's four runs on Qwen2.5-VL-7B (GPU)
	$(PY) experiments/train.py -m experiment=paper_baseline,paper_sft,paper_grpo_v1,paper_grpo_v2 $(ARGS)

plan: $(STAMP)  ## will a run fit: parameters, tokens, peak GPU memory estimate; no weights, no GPU (ARGS="experiment=paper_grpo_v1 plan.gpus=1")
	$(PY) experiments/plan.py $(ARGS)

bench: $(STAMP)  ## speed benchmarks: each experiments/bench_*.py writes bench/<name>.json
	mkdir -p bench
	for script in experiments/bench_*.py; do $(PY) $$script $(ARGS) || exit 1; done

gpu-check: $(STAMP)  ## on a GPU machine only (never in make test): tiny bf16, 7B paper_sft under ZeRO-2, GRPO, vLLM -> bench/gpu.json, <= 10 min
	$(PY) experiments/gpu_check.py $(ARGS)

dashboard: $(STAMP)  ## create the W&B ablation dashboard (online, needs WANDB_API_KEY and [dashboard])
	$(PY) experiments/dashboard.py $(ARGS)

clean:
	rm -rf outputs/* multirun wandb .pytest_cache .mypy_cache .ruff_cache bench/*.json .cache
	touch outputs/.gitkeep
