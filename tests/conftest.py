"""Shared fixtures: a generated sample dataset (real face photos, SBI-style fakes) made once per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Small, fast stage-one settings used by every end-to-end test (random weights: never called pretrained).
FAST = ["--frames", "4", "--crop", "64", "--weights", "random", "--precision", "fp32", "--batch-size", "16"]


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    from pipeline.sample import SampleConfig, run
    out = tmp_path_factory.mktemp("sample") / "data"
    run(SampleConfig(out=str(out), videos=8, seed=0, frames=12))
    return out


def cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m pipeline ARGS`` as a user would; returns the completed process."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    res = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                         cwd=ROOT, env=full_env)
    if check and res.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res


SMALL_ENSEMBLE = """
epochs = 4
patience = 4
threads = 1
[[members]]
name = "lstm"
head = "lstm"
seed = 0
options = { hidden = 16 }
[[members]]
name = "bigru-attn"
head = "bigru-attn"
seed = 1
options = { hidden = 16, attn_dim = 8, fc = 16 }
[[members]]
name = "meanpool"
head = "meanpool"
seed = 2
"""


@pytest.fixture(scope="session")
def sample_store(sample_dataset, tmp_path_factory) -> Path:
    """The sample dataset's feature store (what ``trained_run`` trains on)."""
    store = tmp_path_factory.mktemp("store") / "f.h5"
    # 112 px crops: ResNet50's last block is then 4x4, enough for a Grad-CAM map with a place in it
    cli("features", str(sample_dataset), "--store", str(store), *FAST, "--crop", "112")
    return store


@pytest.fixture(scope="session")
def trained_run(sample_dataset, sample_store, tmp_path_factory) -> dict:
    """A store of the sample dataset and a small trained ensemble on it (what the demo does, smaller)."""
    base = tmp_path_factory.mktemp("run")
    store, run = sample_store, base / "run"
    config = base / "ensemble.toml"
    config.write_text(SMALL_ENSEMBLE)
    cli("train-ensemble", "--store", str(store), "--run", str(run), "--config", str(config))
    return {"store": store, "run": run, "data": sample_dataset}


@pytest.fixture(scope="session")
def second_store(tmp_path_factory) -> dict:
    """Another dataset (the sample generator with another seed) extracted like ``trained_run``'s store."""
    from pipeline.sample import SampleConfig, run
    base = tmp_path_factory.mktemp("second")
    data, store = base / "data", base / "seed1.h5"
    run(SampleConfig(out=str(data), videos=8, seed=1, frames=12))
    cli("features", str(data), "--store", str(store), *FAST, "--crop", "112")
    return {"store": store, "data": data}


@pytest.fixture(scope="session")
def perturbed_store(sample_dataset, tmp_path_factory) -> Path:
    """A perturbed copy of ``trained_run``'s store: the same videos, JPEG quality 15 (level 3) before detection."""
    store = tmp_path_factory.mktemp("perturbed") / "jpeg3.h5"
    cli("features", str(sample_dataset), "--store", str(store), *FAST, "--crop", "112", "--perturb", "jpeg:3")
    return store
