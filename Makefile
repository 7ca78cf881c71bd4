# Every target that runs code depends on `setup`, so `make demo` or `make test` is enough on a fresh clone.
# Public variables (keep stable): DATA STORE RUN VIDEO HEAD ENGINE ARGS (and BUNDLE, for export).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DATA ?= data/sample
STORE ?= data/features.h5
RUN ?= runs/latest
VIDEO ?=
HEAD ?=
ENGINE ?= local
VIDEOS ?= 48
ARGS ?=
DEMO ?= demo
BUNDLE ?= $(RUN)/onnx

.PHONY: setup test sample features inspect train-ensemble train-head report evaluate predict serve export weights demo bench soak clean distclean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; a second `make setup` is a no-op.
# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml (pip takes them from local disk here).
# facenet-pytorch is a test-only reference implementation for MTCNN parity; it pins old torch, hence --no-deps.
# The ray extra (stage one on Ray Data), the serve extra (FastAPI + uvicorn) and the onnx extra (export,
# predict --runtime onnx) are installed here so the test suite exercises them; the bench extra holds what the
# peer anchors of the benchmarks need.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,ray,serve,onnx,bench]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps facenet-pytorch==2.6.0
	@touch $@

test: setup
	$(PY) -m pytest -q -n auto --dist loadfile --durations=20

sample: setup
	$(PY) -m pipeline sample $(DATA) --videos $(VIDEOS) $(ARGS)

features: setup
	$(PY) -m pipeline features $(DATA) --store $(STORE) $(if $(filter-out local,$(ENGINE)),--engine $(ENGINE)) $(ARGS)

inspect: setup
	$(PY) -m pipeline inspect $(STORE) $(ARGS)

train-ensemble: setup
	$(PY) -m pipeline train-ensemble --store $(STORE) --run $(RUN) $(ARGS)

train-head: setup
	@test -n "$(HEAD)" || { echo "usage: make train-head HEAD=name [STORE=...] [RUN=...]"; exit 2; }
	$(PY) -m pipeline train-head $(HEAD) --store $(STORE) --run $(RUN) $(ARGS)

report: setup
	$(PY) -m pipeline report $(RUN) $(ARGS)

# Score another store (same stage-one settings, or a --perturb copy) with RUN; `make report` then covers it.
evaluate: setup
	$(PY) -m pipeline evaluate $(RUN) --store $(STORE) $(ARGS)

predict: setup
	@test -n "$(VIDEO)" || { echo "usage: make predict VIDEO=path [RUN=...]"; exit 2; }
	$(PY) -m pipeline predict $(VIDEO) --run $(RUN) $(ARGS)

# The web page and HTTP API on http://127.0.0.1:8000/ (ARGS="--port 9000", "--host 0.0.0.0" with a token, ...).
serve: setup
	$(PY) -m pipeline serve --run $(RUN) $(ARGS)

# ONNX models of the backbone and every member of RUN, with a manifest, into BUNDLE (default RUN/onnx).
export: setup
	$(PY) -m pipeline export $(RUN) $(BUNDLE) $(ARGS)

# For a user who is online now and offline later: puts torchvision's ImageNet ResNet50 in the torch hub cache.
weights: setup
	$(PY) -m stages.backbone --fetch

# The whole job on a freshly generated sample dataset. --weights auto: ImageNet if loadable, else random
# with a loud warning recorded in the store and the report.
demo: setup
	$(PY) -m pipeline sample $(DEMO)/data --videos $(VIDEOS) --seed 0
	$(PY) -m pipeline features $(DEMO)/data --store $(DEMO)/features.h5 --weights auto --frames 16 --crop 112 $(ARGS)
	$(PY) -m pipeline train-ensemble --store $(DEMO)/features.h5 --run $(DEMO)/run
	$(PY) -m pipeline report $(DEMO)/run
	@echo "demo report: $(DEMO)/run/report.html (and report.md)"

bench: setup
	$(PY) bench/run.py $(ARGS)

# 50 SIGKILLs at random moments during `features` on the dev clips, then a final run: nothing may be lost.
soak: setup
	$(PY) bench/soak.py $(ARGS)

clean:
	rm -rf $(DEMO) runs data/features.h5 .pytest_cache bench/results
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
