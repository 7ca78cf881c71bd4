"""Soak: ``features`` SIGKILLed at random moments, again and again, then run to the end; nothing may be lost.

    .venv/bin/python bench/soak.py [--kills 50] [--max-life 20] [--frames 16] [--crop 112] [--seed 0]
    make soak                      (--copies 4: links to each dev clip, so the kills land in work)

On a real-clip dataset (the dev clips from DEV_CLIPS, as a folder dataset of symlinks; the generated sample
when they are absent): an uninterrupted reference run, then KILLS runs each SIGKILLed after a random time
between 0 and MAX_LIFE seconds (start-up included, so kills land in imports, model loading, decoding,
detection, commits and store growth), then one run to the end. After every kill the store must open and
hold at least the videos it held before the kill; at the end it must hold what the reference holds, with the
same statuses and masks, and the features are compared value by value. Prints the figures and writes
bench/results/soak.json.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import CLIPS, save  # noqa: E402
from features.store import FeatureStore, StoreError  # noqa: E402


def dataset(folder: Path, copies: int) -> tuple[Path, str]:
    """A folder dataset of ``copies`` symlinks to each dev clip (enough videos that the kills land in work,
    not in runs with nothing left to do), or the generated sample when they are absent."""
    found = sorted(CLIPS.glob("*/*.mp4")) if CLIPS.is_dir() else []
    if found:
        for c in range(copies):
            for clip in found:
                dst = folder / clip.parent.name / f"{c}_{clip.name}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(clip)
        return folder, f"{len(found)} dev clips x {copies} ({CLIPS})"
    from pipeline.sample import SampleConfig, run
    run(SampleConfig(out=str(folder), videos=24, frames=48, width=480, height=360))
    return folder, "24 generated sample clips (dev clips not found)"


def command(data: Path, store: Path, args) -> list[str]:
    return [sys.executable, "-m", "pipeline", "features", str(data), "--store", str(store), "--dataset", "folder",
            "--frames", str(args.frames), "--crop", str(args.crop), "--weights", "random", "--precision", "fp32"]


def snapshot(store: Path) -> dict[str, tuple] | None:
    """{video_id: (status, n_valid)} of the committed videos, or None when there is no store yet."""
    if not store.exists():
        return None
    with FeatureStore.open(store) as st:        # raises StoreError if the kill left it unreadable
        return {r.video_id: (r.status, r.n_valid) for r in st.records()}


def arrays(store: Path) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    with FeatureStore.open(store) as st:
        recs = sorted(st.records(), key=lambda r: r.video_id)
        ids = [r.video_id for r in recs]
        feats, masks = st.load(ids)
        boxes = {v: st.frames_of(v)["boxes"] for v in ids}
        return ids, feats, masks, {"status": {r.video_id: r.status for r in recs}, "boxes": boxes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--copies", type=int, default=4, help="links to each dev clip in the dataset")
    ap.add_argument("--max-life", type=float, default=20.0, help="seconds; each run is killed after U(0, this)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--crop", type=int, default=112)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, what = dataset(tmp / "data", args.copies)
        print(f"soak: {what}; {args.kills} SIGKILLs at U(0, {args.max_life:g}) s, then a final run", flush=True)
        t0 = time.perf_counter()
        subprocess.run(command(data, tmp / "ref.h5", args), cwd=ROOT, env=env, check=True, capture_output=True)
        ref_s = time.perf_counter() - t0
        store = tmp / "soak.h5"
        held, unreadable, lost, kills, finished_early = 0, 0, 0, 0, 0
        counts = []
        for i in range(args.kills):
            proc = subprocess.Popen(command(data, store, args), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=rng.uniform(0, args.max_life))
                finished_early += 1                 # it finished before its kill (nothing left to do)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
            try:
                now = snapshot(store)
            except StoreError as exc:
                unreadable += 1
                print(f"  kill {i + 1}: store unreadable: {exc}", flush=True)
                continue
            n = len(now or {})
            lost += max(0, held - n)
            held = max(held, n)
            counts.append(n)
            if (i + 1) % 10 == 0:
                print(f"  {i + 1} runs: {kills} killed, store holds {n} videos", flush=True)
        subprocess.run(command(data, store, args), cwd=ROOT, env=env, check=True, capture_output=True)
        ids_r, fr, mr, dr = arrays(tmp / "ref.h5")
        ids_s, fs, ms, ds = arrays(store)
        same_ids = ids_r == ids_s
        diff = float(np.abs(fr.astype(np.float32) - fs.astype(np.float32)).max()) if same_ids else float("nan")
        box_diff = max((float(np.nanmax(np.abs(dr["boxes"][v] - ds["boxes"][v]), initial=0)) for v in ids_r),
                       default=0.0) if same_ids else float("nan")
        result = {"dataset": what, "runs": args.kills, "sigkills": kills, "finished_before_kill": finished_early,
                  "max_life_s": args.max_life, "stores_readable_after_kill": args.kills - unreadable,
                  "videos_lost": lost, "videos": len(ids_r), "same_videos": same_ids,
                  "same_status": dr["status"] == ds["status"], "same_masks": bool(same_ids and np.array_equal(mr, ms)),
                  "max_feature_diff": diff, "max_box_diff_px": box_diff, "reference_run_s": round(ref_s, 1),
                  "videos_held_after_each_run": counts,
                  "command": " ".join(["python -m pipeline", *command(data, store, args)[3:]])}
    print(f"soak: {kills} SIGKILLs; stores readable after every run: {result['stores_readable_after_kill']}/"
          f"{args.kills}; videos lost: {lost}; final store vs uninterrupted run: same videos {same_ids}, "
          f"same status {result['same_status']}, same masks {result['same_masks']}, "
          f"max feature difference {diff:g}, max box difference {box_diff:g} px")
    print("results:", save("soak", result))
    ok = unreadable == 0 and lost == 0 and same_ids and result["same_status"] and diff == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
