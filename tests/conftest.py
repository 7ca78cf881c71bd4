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
    run(SampleConfig(out=str(out), videos=8, seed=0, frames=12), quiet=True)
    return out


def cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m pipeline ARGS`` as a user would; returns the completed process."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    res = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                         cwd=ROOT, env=full_env)
    if check and res.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res
