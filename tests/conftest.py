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
def trained_run(sample_dataset, tmp_path_factory) -> dict:
    """A store of the sample dataset and a small trained ensemble on it (what the demo does, smaller)."""
    base = tmp_path_factory.mktemp("run")
    store, run = base / "f.h5", base / "run"
    # 112 px crops: ResNet50's last block is then 4x4, enough for a Grad-CAM map with a place in it
    cli("features", str(sample_dataset), "--store", str(store), *FAST, "--crop", "112")
    config = base / "ensemble.toml"
    config.write_text(SMALL_ENSEMBLE)
    cli("train-ensemble", "--store", str(store), "--run", str(run), "--config", str(config))
    return {"store": store, "run": run, "data": sample_dataset}
