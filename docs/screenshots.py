"""Regenerate the README's report screenshots from a real, small demo run (not part of the package).

    python docs/screenshots.py [--out /tmp/shots] [--videos 24]

Generates two sample datasets (seeds 0 and 1), extracts their stores with random backbone weights (the
report says so in its red banner), perturbed copies of the first (jpeg, blur, noise at levels 1, 3, 5),
trains a small ensemble on the first, evaluates it on every other store, writes the report, and takes
two headless-Chromium screenshots of report.html into docs/: the first 1,000 pixels, and the robustness
section. Steps whose output exists are skipped, so a second call only re-renders.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser import CHROMIUM, positions, screenshot  # noqa: E402

STAGE_ONE = ["--frames", "8", "--crop", "112", "--weights", "random", "--precision", "fp32", "--device", "cpu"]
PERTURB = [f"{kind}:{level}" for kind in ("jpeg", "blur", "noise") for level in (1, 3, 5)]
ENSEMBLE = """
threads = 1
[[members]]
name = "bigru-attn"
head = "bigru-attn"
seed = 0
options = { hidden = 128 }
[[members]]
name = "lstm"
head = "lstm"
seed = 1
options = { hidden = 128 }
[[members]]
name = "meanpool"
head = "meanpool"
seed = 2
[[members]]
name = "framelinear"
head = "framelinear"
seed = 3
"""


def pipeline(*args: str) -> None:
    print("+ python -m pipeline", *args, flush=True)
    subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, check=True)


def build(out: Path, videos: int) -> Path:
    """The demo run, evaluated on a second dataset and on perturbed copies; returns its report.html."""
    stores = {}
    for seed, name in ((0, "seed0"), (1, "seed1")):
        data, store = out / f"data-{name}", out / f"{name}.h5"
        if not data.exists():
            pipeline("sample", str(data), "--videos", str(videos), "--seed", str(seed))
        if not store.exists():
            pipeline("features", str(data), "--store", str(store), *STAGE_ONE)
        stores[name] = store
    for spec in PERTURB:
        store = out / f"seed0-{spec.replace(':', '')}.h5"
        if not store.exists():
            pipeline("features", str(out / "data-seed0"), "--store", str(store), *STAGE_ONE, "--perturb", spec)
        stores[f"seed0-{spec.replace(':', '')}"] = store
    run = out / "run"
    if not (run / "run.json").exists():
        (out / "ensemble.toml").write_text(ENSEMBLE)
        pipeline("train-ensemble", "--store", str(stores["seed0"]), "--run", str(run),
                 "--config", str(out / "ensemble.toml"))
    for name, store in stores.items():
        if name != "seed0" and not (run / "evaluations" / name / "evaluation.json").exists():
            pipeline("evaluate", str(run), "--store", str(store))
    pipeline("report", str(run))
    return run / "report.html"


def shoot(page: Path, tmp: Path) -> None:
    docs = ROOT / "docs"
    first = screenshot(page, docs / "report-first-screen.png", tmp, 1280, 1000)
    print("wrote", first)
    pos = positions(page, ["robustness"], tmp)
    top, bottom = pos["robustness"]
    tall = screenshot(page, tmp / "tall.png", tmp, 1280, int(bottom) + 80)
    # from the section's heading (just above the figure) to the bottom of the figure
    Image.open(tall).crop((0, max(0, int(top) - 110), 1280, int(bottom) + 45)).save(docs / "report-robustness.png")
    print("wrote", docs / "report-robustness.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/report-shots", help="work folder (default /tmp/report-shots)")
    parser.add_argument("--videos", type=int, default=24, help="clips per sample dataset (default 24)")
    args = parser.parse_args()
    if CHROMIUM is None:
        sys.exit("chromium not found (apt-get install -y chromium)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shoot(build(out, args.videos), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
