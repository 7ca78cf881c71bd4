"""Shared bits of the benchmarks: the dev clips, machine description, timing and JSON output."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

CLIPS = Path(os.environ.get("DEV_CLIPS", Path(__file__).resolve().parents[2] / "shared/data/dev-clips"))
# The three clips the performance targets are stated on (1080p, 720p, 480p).
TARGET_CLIPS = {"1080p": "real/dfdc_lynaeydofd.mp4", "720p": "real/ffpp_youtube_634.mp4",
                "480p": "real/cyshih704_real.mp4"}
RESULTS = Path(__file__).resolve().parent / "results"


def target_clips() -> dict[str, Path]:
    found = {k: CLIPS / v for k, v in TARGET_CLIPS.items() if (CLIPS / v).is_file()}
    if not found:
        raise SystemExit(f"benchmark clips not found under {CLIPS} (set DEV_CLIPS=folder with real/*.mp4)")
    return found


def machine() -> dict:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("model name")), "?")
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "avx512_bf16": "avx512_bf16" in flags, "cuda": torch.cuda.is_available(),
            "python": platform.python_version(), "torch": torch.__version__}


def best_of(fn, repeat: int = 3) -> float:
    """Fastest of ``repeat`` runs (seconds): the least disturbed by other load on a shared machine."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path
