"""The second look on darkened footage: the subject's coverage before and after it, and what it costs.

For every dev clip (DEV_CLIPS, default ../shared/data/dev-clips): N evenly spaced frames of the original file
(the reference: the first search and ``select_subject``, then the second look), and the same frames through
ffmpeg filters of the dark-footage class (gamma, brightness and contrast, noise), encoded as a clip (H.264,
CRF 18) and decoded again. Per case: frames where the subject is found by the first search alone, with the
second look, and with a second look that only lowers the thresholds (no normalisation: the comparison behind
the design), all counted against the frames where the original has it; the IoU of the boxes with the
original's; frames found where the original has none. Cost: CPU seconds of the first search and of the
second look (one torch thread, process time), and the second look as a share of the detection time. One
case darkens the whole file of dfdc_part10_widuwuoiur (eq=gamma=0.4, issue 18), and a test pattern is run
through every filter (it must stay without a face).

    .venv/bin/python bench/faces_dark.py [--frames 16] [--clips '*/*.mp4'] [--filters gamma=0.4,...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import CLIPS, save  # noqa: E402
from stages.decode import sample_frames  # noqa: E402
from stages.faces import FaceConfig, FaceDetector, select_subject  # noqa: E402
from stages.faces.second_look import second_look  # noqa: E402
from stages.media import ffmpeg_exe  # noqa: E402

FILTERS = ("eq=gamma=0.4", "eq=gamma=0.3", "eq=brightness=-0.25:contrast=0.5", "eq=brightness=-0.15:contrast=0.4",
           "eq=gamma=0.4,noise=alls=20:allf=t", "eq=brightness=-0.25:contrast=0.5,noise=alls=15:allf=t")
WHOLE = ("fake/dfdc_part10_widuwuoiur.mp4", "eq=gamma=0.4")   # issue 18's example, the whole file darkened


def _ffmpeg(args: list[str], data: bytes | None = None) -> None:
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], input=data,
                         capture_output=True)
    if res.returncode:
        raise SystemExit(f"ffmpeg failed: {res.stderr.decode(errors='replace')[-500:]}")


def filtered(frames: np.ndarray, vf: str, path: Path) -> np.ndarray:
    """(T, H, W, 3) uint8 -> the same frames through ffmpeg ``vf``, encoded and decoded again."""
    n, h, w, _ = frames.shape
    _ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "8", "-i", "pipe:", "-vf", vf,
             "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)],
            np.ascontiguousarray(frames).tobytes())
    return sample_frames(path, n).frames


def first_search(det: FaceDetector, frames: np.ndarray):
    c0 = time.process_time()
    dets = det.detect(frames)
    track = select_subject(dets, frames.shape[1:3], det.cfg)
    return dets, track, time.process_time() - c0


def looked(det, frames, dets, track, normalised=True):
    c0 = time.process_time()
    out = second_look(frames, dets, track, det, normalised=normalised)
    return out, time.process_time() - c0


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def case(det, frames, ref) -> dict:
    """One darkened case against the reference track ``ref`` (the original's, with the second look)."""
    dets, track, det_s = first_search(det, frames)
    sl, sl_s = looked(det, frames, dets, track)
    plain, _ = looked(det, frames, dets, track, normalised=False)
    both = ref.found & sl.track.found
    iou = _iou(sl.track.boxes[both], ref.boxes[both]) if both.any() else np.zeros(0)
    return {"ref": int(ref.found.sum()), "first": int((track.found & ref.found).sum()),
            "second": int(both.sum()), "thresholds_only": int((plain.track.found & ref.found).sum()),
            "extra": int((sl.track.found & ~ref.found).sum()),
            "extra_second_look": int(sum(not ref.found[t] for t in sl.found)), "looked": len(sl.looked),
            "iou_min": round(float(iou.min()), 3) if len(iou) else None,
            "detect_s": round(det_s, 3), "second_look_s": round(sl_s, 3)}


def print_table(rows: dict) -> None:
    print("| clip | filter | in original | first search | + second look | thresholds only | extra (by the "
          "second look) | IoU min | detect CPU s | second look CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (clip, vf), r in rows.items():
        print(f"| {clip} | {vf} | {r['ref']} | {r['first']} | {r['second']} | {r['thresholds_only']} | "
              f"{r['extra']} ({r['extra_second_look']}) | {r['iou_min']} | {r['detect_s']:.2f} | "
              f"{r['second_look_s']:.3f} |")


def summary(rows: dict) -> dict:
    dark = {k: r for k, r in rows.items() if k[1] != "original"}
    ref = sum(r["ref"] for r in dark.values())
    with_gaps = [r for r in dark.values() if r["looked"]]
    out = {"cases": len(dark), "frames_in_original": ref,
           "first_search": sum(r["first"] for r in dark.values()),
           "second_look": sum(r["second"] for r in dark.values()),
           "thresholds_only": sum(r["thresholds_only"] for r in dark.values()),
           "extra": sum(r["extra"] for r in dark.values()),
           "extra_second_look": sum(r["extra_second_look"] for r in dark.values()),
           "cases_at_99": sum(r["second"] >= 0.99 * r["ref"] for r in dark.values()),
           "cases_at_99_first": sum(r["first"] >= 0.99 * r["ref"] for r in dark.values()),
           "iou_min": min((r["iou_min"] for r in dark.values() if r["iou_min"] is not None), default=None),
           "videos_with_gaps": len(with_gaps),
           "second_look_s_median": float(np.median([r["second_look_s"] for r in with_gaps])) if with_gaps else 0,
           "second_look_s_max": max((r["second_look_s"] for r in with_gaps), default=0),
           "second_look_share": sum(r["second_look_s"] for r in dark.values())
           / max(sum(r["detect_s"] for r in dark.values()), 1e-9)}
    orig = [r for k, r in rows.items() if k[1] == "original"]
    out["original_first"] = f"{sum(r['first'] for r in orig)}/{sum(r['ref'] for r in orig)}"
    out["original_second"] = f"{sum(r['second'] for r in orig)}/{sum(r['ref'] for r in orig)}"
    out["original_second_look_s"] = sum(r["second_look_s"] for r in orig)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--clips", default="*/*.mp4", help="glob of dev clips under DEV_CLIPS")
    ap.add_argument("--filters", default=";".join(FILTERS), help="ffmpeg -vf chains, ';'-separated")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    paths = sorted(CLIPS.glob(args.clips)) if CLIPS.is_dir() else []
    if not paths:
        raise SystemExit(f"no dev clips under {CLIPS} (set DEV_CLIPS)")
    det = FaceDetector(FaceConfig())
    tmp = Path(tempfile.mkdtemp(prefix="faces_dark_"))
    rows: dict = {}
    for p in paths:
        name = str(p.relative_to(CLIPS))
        frames = sample_frames(p, args.frames).frames
        dets, track, det_s = first_search(det, frames)
        ref, sl_s = looked(det, frames, dets, track)
        kept = track.found & ref.track.found
        iou = _iou(ref.track.boxes[kept], track.boxes[kept]) if kept.any() else np.zeros(0)
        rows[(name, "original")] = {"ref": len(frames), "first": int(track.found.sum()),
                                    "second": int(ref.track.found.sum()), "thresholds_only": None,
                                    "extra": len(ref.found), "extra_second_look": len(ref.found),
                                    "looked": len(ref.looked),
                                    "iou_min": round(float(iou.min()), 3) if len(iou) else None,
                                    "detect_s": round(det_s, 3), "second_look_s": round(sl_s, 3)}
        r = rows[(name, "original")]
        print(f"{name} original: {r['first']} -> {r['second']}/{r['ref']} {r['second_look_s']:.2f}/"
              f"{r['detect_s']:.2f} s", flush=True)
        for vf in args.filters.split(";"):
            rows[(name, vf)] = case(det, filtered(frames, vf, tmp / "d.mp4"), ref.track)
            r = rows[(name, vf)]
            print(f"{name} {vf}: {r['first']} -> {r['second']}/{r['ref']} (thresholds only {r['thresholds_only']})"
                  f" iou {r['iou_min']} extra {r['extra']} ({r['extra_second_look']}) {r['second_look_s']:.2f}/"
                  f"{r['detect_s']:.2f} s",
                  flush=True)
        if name == WHOLE[0]:
            _ffmpeg(["-i", str(p), "-vf", WHOLE[1], "-an", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast",
                     str(tmp / "whole.mp4")])
            rows[(name, WHOLE[1] + " (whole file)")] = case(det, sample_frames(tmp / "whole.mp4", args.frames).frames,
                                                            ref.track)
    pattern = tmp / "testsrc.mp4"
    _ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=8", "-frames:v", "16", "-c:v", "libx264",
             "-pix_fmt", "yuv420p", str(pattern)])
    base = sample_frames(pattern, args.frames).frames
    no_face = {}
    for vf in ("original", *args.filters.split(";")):
        frames = base if vf == "original" else filtered(base, vf, tmp / "t.mp4")
        dets, track, _ = first_search(det, frames)
        no_face[vf] = int(looked(det, frames, dets, track)[0].track.found.sum())
    print_table(rows)
    summ = summary(rows)
    print("summary:", summ)
    print("test pattern, frames with a subject:", no_face)
    payload = {"command": " ".join(["python bench/faces_dark.py", *(argv if argv is not None else sys.argv[1:])]),
               "detector": det.describe()["config"], "frames": args.frames, "summary": summ,
               "test_pattern_faces": no_face, "cases": [{"clip": c, "filter": f, **r} for (c, f), r in rows.items()]}
    print("saved", save("faces_dark", payload))
    return payload


if __name__ == "__main__":
    main()
