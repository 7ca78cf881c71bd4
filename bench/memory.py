"""Bounded memory: peak resident memory of ``features`` on 100 and on 1,000 videos (goal: within 10%).

    .venv/bin/python bench/memory.py [--small 100] [--large 1000] [--frames 16] [--crop 112]

Generates a sample dataset of LARGE clips (real face photos, 256x256, 24 frames each), runs stage one as a
user does (``python -m pipeline features``) on its first SMALL videos and on all of them, and reads each
run's peak resident set size from the kernel (getrusage of the finished child). What could grow with the
dataset (decoded frames, crops, batches, the store) is bounded by design: ``--prefetch`` decoded videos,
one backbone batch, rows written as they finish. Prints the figures and writes bench/results/memory.json.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import save  # noqa: E402


def peak_rss_mb(cmd: list[str], env: dict) -> tuple[float, float]:
    """(peak RSS of the child in MB, wall seconds). Each run is a fresh child whose maxrss is its own."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0       # ru_maxrss is in KB on Linux


def subset(manifest: Path, n: int, out: Path) -> Path:
    """A CSV dataset of the first n clips of the sample (paths absolute, groups kept)."""
    with manifest.open(newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["group"])[:n]
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["video_id", "path", "label", "group"])
        w.writeheader()
        for r in rows:
            w.writerow({"video_id": r["video_id"], "path": str(manifest.parent / r["path"]), "label": r["label"],
                        "group": r["group"]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--crop", type=int, default=112)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", "sample", str(tmp / "sample"), "--videos", str(args.large)],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        print(f"sample of {args.large} clips made in {time.perf_counter() - t0:.0f} s", flush=True)
        runs = {}
        for n in (args.small, args.large):
            data = subset(tmp / "sample" / "manifest.csv", n, tmp / f"first{n}.csv")
            cmd = [sys.executable, "-m", "pipeline", "features", str(data), "--store", str(tmp / f"s{n}.h5"),
                   "--frames", str(args.frames), "--crop", str(args.crop), "--weights", "random"]
            rss, wall = peak_rss_mb(cmd, env)
            runs[n] = {"videos": n, "peak_rss_mb": round(rss, 1), "wall_s": round(wall, 1),
                       "command": " ".join(["python -m pipeline", *cmd[3:]])}
            print(f"{n:5d} videos: peak RSS {rss:7.1f} MB, {wall:6.1f} s", flush=True)
    ratio = runs[args.large]["peak_rss_mb"] / runs[args.small]["peak_rss_mb"]
    print(f"peak RSS {args.large} / {args.small} videos: {ratio:.3f} (goal <= 1.10)")
    print("results:", save("memory", {"runs": list(runs.values()), "ratio": round(ratio, 4)}))
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
