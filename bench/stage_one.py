"""Stage one against the real peers and the floor, measured side by side, and where our time goes.

    .venv/bin/python bench/stage_one.py [--reps 3] [--skip-cli] [--no-side-by-side]

1. The anchors: ``../shared/bench/side_by_side.py`` (or ``$SHARED_BENCH``), run from the project root. It runs,
   interleaved per clip and repetition, the seed-style naive and the tuned peer exactly as
   ``../shared/bench/peer_bench.py`` defines them (OpenCV decoding, facenet-pytorch MTCNN, torchvision
   ResNet50), the project's per-video path (``bench/per_video.py``: ``FaceStage`` + ``Embedder``), and the
   floor: the cheapest exact decode of the stream (``-f null``, the faster of a full and a ``-skip_frame
   noref`` decode) plus the fastest bare ResNet50 on our crops; then ``python -m pipeline features`` on 19
   videos. Nothing of it is copied here; without ../shared this part is skipped and says so.
2. Our breakdown on the same clips: probe, decode, detection (and the whole search it replaces), tracking and
   cropping, the backbone, in wall and CPU seconds.
3. The targets of the performance note, met or not, and the store's bytes per video.

Prints every figure and writes bench/results/stage_one.json (and side_by_side.json).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import RESULTS, save, target_clips  # noqa: E402

SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
# (naive/ours at least, tuned/ours at least, ours/floor at most), from the performance note
TARGETS = {"1080p": (4.0, 2.0, 1.3), "720p": (3.5, 1.8, 1.3), "480p": (2.5, 1.8, 1.35)}
CLI_TARGET = 1.35


def side_by_side(reps: int, skip_cli: bool) -> dict | None:
    script = SHARED / "side_by_side.py"
    if not script.is_file():
        print(f"side by side: {script} not found: the anchors are not measured (set SHARED_BENCH)")
        return None
    out = RESULTS / "side_by_side.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-W", "ignore", str(script), "--reps", str(reps), "--json", str(out)]
    cmd += ["--skip-cli"] if skip_cli else []
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.read_text())


def cpu() -> float:
    import resource
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    c0, t0 = cpu(), time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 3), round(cpu() - c0, 3)


def breakdown(frames: int, crop: int, reps: int) -> dict:
    """Wall and CPU seconds of each step of our per-video path, best of ``reps``, per target clip."""
    from dataclasses import replace

    from stages.decode import sample_frames
    from stages.faces import FaceConfig, FaceDetector, crop_faces, select_subject
    from stages.preprocess import FeatureConfig, FramePipeline
    from stages.probe import probe
    pipe = FramePipeline(FeatureConfig(frames=frames, crop=crop, weights="random", batch_size=frames), FaceConfig())
    whole = FaceDetector(replace(pipe.faces, coarse_min_face=0))
    out = {}
    for label, path in target_clips().items():
        best: dict = {}
        for _ in range(reps):
            info, *t_probe = timed(lambda: probe(path))
            sampled, *t_dec = timed(lambda: sample_frames(path, frames, pipe.cfg.sampling, info=info))
            dets, *t_det = timed(lambda: pipe.stage.detector.detect(sampled.frames))
            _, *t_whole = timed(lambda: whole.detect(sampled.frames))
            (crops, valid), *t_crop = timed(lambda: crop_faces(sampled.frames, select_subject(
                dets, sampled.frames.shape[1:3], pipe.faces), crop, pipe.faces.margin))
            _, *t_emb = timed(lambda: pipe.embedder.embed(crops[valid]))
            for k, v in {"probe": t_probe, "decode": t_dec, "detect": t_det, "detect_whole_search": t_whole,
                         "track_crop": t_crop, "backbone": t_emb}.items():
                if k not in best or v[0] < best[k][0]:
                    best[k] = v
        out[label] = {"size": f"{info.width}x{info.height}", "sampling": sampled.mode, "crops": int(valid.sum()),
                      **{k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in best.items()}}
        row = "  ".join(f"{k} {v[0]:.2f}" for k, v in best.items())
        print(f"{label:5s} ({out[label]['size']}, {sampled.mode}): {row}", flush=True)
    return out


def store_bytes(frames: int, crop: int, copies: int = 8) -> dict:
    """Bytes per video of a store written by the CLI (``copies`` links to each target clip, so the file's fixed
    part is shared as in a real corpus) against the raw float16 features."""
    clips = [path for path in target_clips().values() for _ in range(copies)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data" / "real"
        data.mkdir(parents=True)
        (data.parent / "fake").mkdir()
        for i, path in enumerate(clips):
            (data if i % 2 == 0 else data.parent / "fake").joinpath(f"{i}_{path.name}").symlink_to(path)
        store = Path(tmp) / "s.h5"
        subprocess.run([sys.executable, "-m", "pipeline", "features", str(data.parent), "--store", str(store),
                        "--dataset", "folder", "--weights", "random", "--frames", str(frames), "--crop", str(crop)],
                       cwd=ROOT, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        size = store.stat().st_size / len(clips)
    raw = frames * 2048 * 2
    return {"bytes_per_video": round(size), "raw_float16": raw, "ratio": round(size / raw, 4)}


def startup(reps: int) -> dict:
    """Seconds from launching ``python -m pipeline features`` to its first video (imports, config, model
    load, the engine's choice), median of ``reps`` launches on a fresh store each time: the line "extracting
    N videos" is printed once everything is loaded and before the first video is decoded."""
    clips = list(target_clips().values())[:2]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, clip in zip(("real", "fake"), clips):
            (Path(tmp) / "data" / label).mkdir(parents=True)
            (Path(tmp) / "data" / label / clip.name).symlink_to(clip)
        data = Path(tmp) / "data" / "real"
        for i in range(reps):
            store = Path(tmp) / f"s{i}.h5"
            cmd = [sys.executable, "-m", "pipeline", "features", str(data.parent), "--store", str(store),
                   "--dataset", "folder", "--weights", "random", "--frames", "16"]
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
            seen = None
            for line in proc.stdout:
                if seen is None and "extracting" in line:
                    seen = time.perf_counter() - t0
            proc.wait()
            if seen is not None:
                times.append(seen)
    times.sort()
    return {"median_s": round(times[len(times) // 2], 2) if times else None, "all_s": [round(t, 2) for t in times]}


def verdicts(sbs: dict) -> list[dict]:
    rows = []
    for label, (naive, tuned, floor) in TARGETS.items():
        got = sbs["clips"].get(label)
        if got is None:
            continue
        r = got["ratios"]
        rows.append({"clip": label, "naive/ours": r["naive/ours"], "tuned/ours": r["tuned/ours"],
                     "ours/floor": r["ours/floor"], "targets": [naive, tuned, floor],
                     "met": [r["naive/ours"] >= naive, r["tuned/ours"] >= tuned, r["ours/floor"] <= floor]})
    if "cli" in sbs:
        rows.append({"clip": "CLI, 19 videos", "over_mean_floor": sbs["cli"]["over_mean_floor"],
                     "targets": [CLI_TARGET], "met": [sbs["cli"]["over_mean_floor"] <= CLI_TARGET]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--no-side-by-side", action="store_true")
    ap.add_argument("--repeat", type=int, help=argparse.SUPPRESS)    # old name of --reps
    args = ap.parse_args()
    reps = args.repeat or args.reps
    sbs = None if args.no_side_by_side else side_by_side(reps, args.skip_cli)
    print("\n## our per-video path, step by step (best of", reps, "runs; wall seconds)", flush=True)
    steps = breakdown(args.frames, args.crop, reps)
    store = store_bytes(args.frames, args.crop)
    start = startup(reps)
    print(f"\nstart-up (launch to the first video, median of {reps}): {start['median_s']} s {start['all_s']} "
          f"(target <= 3 s)")
    print(f"\nstore: {store['bytes_per_video']} bytes per video, {store['ratio']:.3f}x the raw float16 features")
    checks = verdicts(sbs) if sbs else []
    for c in checks:
        ok = ", ".join(("met" if m else "NOT met") for m in c["met"])
        figures = {k: round(v, 2) for k, v in c.items() if "/" in k or k == "over_mean_floor"}
        print(f"target {c['clip']}: {figures} against {c['targets']}: {ok}")
    print("results:", save("stage_one", {"side_by_side": sbs, "steps": steps, "store": store, "startup": start,
                                         "targets": checks}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
