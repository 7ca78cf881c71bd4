"""``make bench``: every benchmark in one go, each printing its figures and writing bench/results/*.json.

    .venv/bin/python bench/run.py [--only decode,faces,...] [--quick]

The real clips come from DEV_CLIPS (default ../shared/data/dev-clips); they are research data that this
repository does not ship. Each benchmark reports ratios measured in the same run, since absolute speed on a
shared 2-core machine moves by up to 1.5x from minute to minute.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> (script, extra args for --quick)
BENCHES = {
    "decode": ("decode.py", ["--repeat", "1"]),
    "faces": ("faces.py", ["--quick"]),
    "faces_coarse": ("faces_coarse.py", ["--repeat", "1"]),
    "faces_dark": ("faces_dark.py", ["--filters", "eq=gamma=0.4"]),
    "stage_one": ("stage_one.py", ["--repeat", "1"]),
    "ray": ("ray_scaling.py", ["--quick"]),
    "soak": ("soak.py", ["--kills", "10"]),
    "memory": ("memory.py", ["--small", "20", "--large", "200"]),
    "onnx": ("onnx_vs_torch.py", ["--quick"]),
    "serve_load": ("serve_load.py", ["--quick"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    ap.add_argument("--quick", action="store_true", help="fewer repeats and clips")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    failed = []
    for name in names:
        script, quick = BENCHES[name]
        if name == "ray" and importlib.util.find_spec("ray") is None:
            print("== ray: Ray is not installed (pip install -e '.[ray]'), skipped")
            continue
        print(f"== {name}: {sys.executable} bench/{script} {' '.join(quick if args.quick else [])}", flush=True)
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, str(HERE / script), *(quick if args.quick else [])],
                             cwd=HERE.parent)
        print(f"== {name}: exit {res.returncode} after {time.perf_counter() - t0:.0f} s", flush=True)
        if res.returncode:
            failed.append(name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
