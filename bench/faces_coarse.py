"""Coarse-first face detection vs the whole search: CPU seconds per video and the subject's boxes, per clip.

For every dev clip (DEV_CLIPS, default ../shared/data/dev-clips) and every generated sample clip (made in a
temporary folder with ``pipeline sample``): N evenly spaced frames (sample_frames), detected by the whole
search (``FaceConfig(coarse_min_face=0)``) and by the coarse-first search (the default, 79 px), then
``select_subject``. Speed: CPU seconds of this process (one torch thread unless --threads), modes interleaved
and alternated in order over --repeat runs, the fastest run kept (the median is saved too), wall seconds
alongside; on a shared 2-core machine only ratios measured in one run mean anything. Accuracy: the subject's
found frames (the same ones?) and the IoU of its boxes with the whole search's, frame by frame.

    .venv/bin/python bench/faces_coarse.py [--frames 16] [--repeat 3] [--coarse-min-face 79] [--sample 8]
                                           [--clips 'real/*.mp4'] [--threads N] [--original PATH]

--original PATH: time "today" with the stages/faces package found under PATH (e.g. a git worktree of the
commit before this change) instead of this tree's code with coarse search off.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import CLIPS, save  # noqa: E402
from stages.faces import FaceConfig, FaceDetector, select_subject  # noqa: E402


def original_detector(root: Path):
    """FaceDetector() of another tree's stages/faces, imported as a separate package (faces_original)."""
    pkg = Path(tempfile.mkdtemp(prefix="faces_original_"))
    (pkg / "faces_original").mkdir()
    for src in (root / "stages" / "faces").glob("*.py"):
        text = src.read_text().replace("stages.faces", "faces_original")
        (pkg / "faces_original" / src.name).write_text(text)
    sys.path.insert(0, str(pkg))
    import faces_original
    cfg = faces_original.FaceConfig
    whole = {"coarse_min_face": 0} if "coarse_min_face" in cfg.__dataclass_fields__ else {}
    return faces_original.FaceDetector(cfg(**whole))


def load_clips(args) -> dict[str, np.ndarray]:
    from stages.decode import sample_frames
    paths = {str(p.relative_to(CLIPS)): p for p in sorted(CLIPS.glob(args.clips))} if CLIPS.is_dir() else {}
    if args.sample:
        from pipeline.sample import SampleConfig, run
        out = Path(tempfile.mkdtemp(prefix="faces_coarse_sample_")) / "sample"
        run(SampleConfig(out=str(out), videos=args.sample))
        paths.update({f"sample/{p.parent.name}/{p.name}": p for p in sorted(out.rglob("*.mp4"))})
    if not paths:
        raise SystemExit(f"no clips: none under {CLIPS} (set DEV_CLIPS) and --sample 0")
    return {name: sample_frames(p, args.frames).frames for name, p in paths.items()}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def bench_clip(frames: np.ndarray, modes: dict, repeat: int, cfg: FaceConfig) -> dict:
    tracks, profile = {}, {}
    for name, det in modes.items():               # warm-up, and the detections compared
        prof: dict = {}
        dets = det.detect(frames, profile=prof) if name == "coarse" else det.detect(frames)
        tracks[name] = select_subject(dets, frames.shape[1:3], cfg)
        profile = prof if name == "coarse" else profile
    cpu = {k: [] for k in modes}
    wall = {k: [] for k in modes}
    order = list(modes)
    for r in range(repeat):
        for name in (order if r % 2 == 0 else order[::-1]):
            c0, w0 = time.process_time(), time.perf_counter()
            modes[name].detect(frames)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    ref, got = tracks["today"], tracks["coarse"]
    both = ref.found & got.found
    iou = box_iou(got.boxes[both], ref.boxes[both]) if both.any() else np.zeros(0)
    return {"size": list(frames.shape[1:3]), "frames": len(frames),
            "cpu_min": {k: round(min(v), 4) for k, v in cpu.items()},
            "cpu_median": {k: round(statistics.median(v), 4) for k, v in cpu.items()},
            "wall_min": {k: round(min(v), 4) for k, v in wall.items()},
            "found_today": int(ref.found.sum()), "found_coarse": int(got.found.sum()),
            "same_frames": bool(np.array_equal(ref.found, got.found)),
            "iou_min": round(float(iou.min()), 4) if len(iou) else None,
            "iou_mean": round(float(iou.mean()), 5) if len(iou) else None,
            "coarse_profile": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in profile.items()
                               if not k.endswith("_s")}}


def print_table(rows: dict) -> None:
    print("| clip | frame | today CPU s | coarse CPU s | x cheaper | today wall s | coarse wall s | "
          "found today | found coarse | same frames | IoU min | IoU mean |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        c, w = r["cpu_min"], r["wall_min"]
        print(f"| {name} | {r['size'][1]}x{r['size'][0]} | {c['today']:.3f} | {c['coarse']:.3f} | "
              f"{c['today'] / c['coarse']:.2f} | {w['today']:.3f} | {w['coarse']:.3f} | {r['found_today']} | "
              f"{r['found_coarse']} | {'yes' if r['same_frames'] else 'NO'} | {r['iou_min']} | {r['iou_mean']} |")
    tot = {k: sum(r["cpu_min"][k] for r in rows.values()) for k in ("today", "coarse")}
    print(f"| **all {len(rows)} clips** | | {tot['today']:.2f} | {tot['coarse']:.2f} | "
          f"{tot['today'] / tot['coarse']:.2f} | | | | | "
          f"{sum(r['same_frames'] for r in rows.values())}/{len(rows)} | "
          f"{min((r['iou_min'] for r in rows.values() if r['iou_min'] is not None), default=None)} | |")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--coarse-min-face", type=float, default=FaceConfig().coarse_min_face)
    ap.add_argument("--sample", type=int, default=8, help="generated sample videos to add (0: none)")
    ap.add_argument("--clips", default="*/*.mp4", help="glob of dev clips under DEV_CLIPS")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: CPU time is meaningful)")
    ap.add_argument("--original", type=Path, help="time 'today' with PATH/stages/faces")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = FaceConfig(coarse_min_face=0)
    coarse_cfg = FaceConfig(coarse_min_face=args.coarse_min_face)
    modes = {"today": original_detector(args.original) if args.original else FaceDetector(cfg),
             "coarse": FaceDetector(coarse_cfg)}
    clips = load_clips(args)
    rows = {}
    for name, frames in clips.items():
        rows[name] = bench_clip(frames, modes, args.repeat, cfg)
        r = rows[name]
        print(f"{name}: cpu {r['cpu_min']} found {r['found_today']}/{r['found_coarse']} iou {r['iou_min']}",
              flush=True)
    print_table(rows)
    payload = {"command": " ".join(["python bench/faces_coarse.py", *(argv if argv is not None else sys.argv[1:])]),
               "today": "original code at " + str(args.original) if args.original else "the whole search",
               "coarse": modes["coarse"].describe()["config"], "frames": args.frames, "repeat": args.repeat,
               "clips": rows}
    print("saved", save("faces_coarse", payload))
    return payload


if __name__ == "__main__":
    main()
