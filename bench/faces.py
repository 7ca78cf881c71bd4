"""Face detection speed: our batched MTCNN vs facenet-pytorch's MTCNN on the same frames, in one run.

For each of the 1080p, 720p and 480p dev clips: N evenly spaced frames; ours one frame per call and all N
in one call; facenet-pytorch (same weights, its own cascade) one frame per call and in batches of 4 and N,
on the frames already downscaled to our detection scale (its downscaling is not timed, ours is), also with
one torch thread when there are more (often its best mode when other jobs share the cores). Modes are
interleaved and each keeps its fastest repeat, because other load moves absolute figures on a shared
machine; the ratio is ours (best) / facenet (best). Parity of the boxes is checked on the same frames.

    .venv/bin/python bench/faces.py [--frames 16] [--repeat 3] [--quick] [--device cpu|cuda] [--threads N]
                                    [--clips 1080p,720p,480p]

Without the dev clips (DEV_CLIPS or /work/shared/data/dev-clips) it falls back to synthetic frames: the
astronaut and Grace Hopper photos pasted on a grey canvas at each size, and says so in the output.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import CLIPS, TARGET_CLIPS, save  # noqa: E402
from stages.faces import FaceConfig, FaceDetector  # noqa: E402

SIZES = {"1080p": (1080, 1920), "720p": (720, 1280), "480p": (480, 640)}


def synthetic_frames(hw: tuple[int, int], n: int) -> np.ndarray:
    """Two real face photos at a few positions on a grey canvas (used when the dev clips are absent)."""
    from matplotlib import cbook
    from PIL import Image
    from skimage import data
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        photos = [data.astronaut(), np.asarray(im.convert("RGB"))]
    h, w = hw
    frames = np.full((n, h, w, 3), 110, np.uint8)
    for t in range(n):
        img = photos[t % 2]
        side = min(h, w) // 2
        img = np.asarray(Image.fromarray(img).resize((side, side)))
        y, x = (h - side) * (t % 3) // 2, (w - side) * (t % 5) // 4
        frames[t, y:y + side, x:x + side] = img
    return frames


def load_frames(name: str, n: int) -> tuple[np.ndarray, str]:
    path = CLIPS / TARGET_CLIPS[name]
    if path.is_file():
        from stages.decode import sample_frames
        return sample_frames(path, n).frames, str(path.relative_to(CLIPS))
    return synthetic_frames(SIZES[name], n), "synthetic (dev clips not found)"


def reference_detector(cfg: FaceConfig, device: str):
    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:
        print(f"facenet-pytorch not importable ({exc}): no reference ratio; "
              "pip install --no-deps facenet-pytorch requests tqdm")
        return None
    return MTCNN(keep_all=True, post_process=False, device=device, min_face_size=cfg.min_face,
                 thresholds=list(cfg.thresholds), factor=cfg.scale_factor)


def parity(ours, boxes, probs) -> dict:
    """Face counts per frame agree? worst IoU of a matched box, worst probability difference."""
    from torchvision.ops import box_iou
    same, ious, dps = 0, [], []
    for t, d in enumerate(ours):
        ref = np.zeros((0, 4), np.float32) if boxes[t] is None else np.asarray(boxes[t], np.float32)
        same += len(ref) == len(d)
        if len(ref) and len(d):
            iou = box_iou(torch.from_numpy(d.boxes), torch.from_numpy(ref)).numpy()
            ious.append(iou.max(axis=1).min())
            dps.append(np.abs(d.probs - np.asarray(probs[t], np.float32)[iou.argmax(axis=1)]).max())
    return {"frames_same_count": f"{same}/{len(ours)}", "faces": int(sum(len(d) for d in ours)),
            "min_iou": round(float(min(ious)), 4) if ious else None,
            "max_prob_diff": round(float(max(dps)), 5) if dps else None}


def one_thread(fn):
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


def time_modes(modes: dict, repeat: int) -> tuple[dict, dict]:
    """Fastest of ``repeat`` interleaved runs of every mode: wall seconds, and CPU seconds of this process
    (with one thread the CPU figure hardly moves when other jobs share the machine; the wall one does)."""
    wall = {k: float("inf") for k in modes}
    cpu = dict(wall)
    for fn in modes.values():       # warm-up: first-call allocations and kernel selection
        fn()
    for _ in range(repeat):
        for name, fn in modes.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], time.perf_counter() - t0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
    return wall, cpu


def bench_clip(name: str, n: int, repeat: int, det: FaceDetector, coarse: FaceDetector, ref) -> dict:
    frames, source = load_frames(name, n)
    n = len(frames)
    small = det.to_detection_scale(frames).cpu().numpy()   # what both detectors search
    modes = {"ours_b1": lambda: [det.detect(f[None]) for f in frames],
             f"ours_b{n}": lambda: det.detect(frames),
             "ours_coarse": lambda: coarse.detect(frames)}  # the default: the video's frames, coarse first
    if ref is not None:
        modes["facenet_b1"] = lambda: [ref.detect(small[i:i + 1]) for i in range(n)]
        modes["facenet_b4"] = lambda: [ref.detect(small[i:i + 4]) for i in range(0, n, 4)]
        modes[f"facenet_b{n}"] = lambda: ref.detect(small)
        if torch.get_num_threads() > 1:   # its best under load from other jobs is often a single thread
            modes["facenet_b1_1thread"] = one_thread(modes["facenet_b1"])
            modes["facenet_b4_1thread"] = one_thread(modes["facenet_b4"])
    seconds, cpu_seconds = time_modes(modes, repeat)
    fps = {k: round(n / v, 2) for k, v in seconds.items()}
    profile: dict = {}
    det.detect(frames, profile=profile)
    row = {"source": source, "frames": n, "size": list(frames.shape[1:3]), "detect_size": list(small.shape[1:3]),
           "seconds": {k: round(v, 4) for k, v in seconds.items()}, "fps": fps,
           "cpu_seconds": {k: round(v, 4) for k, v in cpu_seconds.items()},
           "stages": {k: round(v, 4) if isinstance(v, float) else v for k, v in profile.items()}}
    if ref is not None:
        best_ref = min(v for k, v in seconds.items() if k.startswith("facenet"))
        row["ratio_batched_vs_facenet_best"] = round(best_ref / seconds[f"ours_b{n}"], 2)
        row["ratio_b1_vs_facenet_best"] = round(best_ref / seconds["ours_b1"], 2)
        row["facenet_best_mode"] = min((v, k) for k, v in seconds.items() if k.startswith("facenet"))[1]
        best_ref_cpu = min(v for k, v in cpu_seconds.items() if k.startswith("facenet"))
        row["cpu_ratio_batched_vs_facenet_best"] = round(best_ref_cpu / cpu_seconds[f"ours_b{n}"], 2)
        row["ratio_coarse_vs_facenet_best"] = round(best_ref / seconds["ours_coarse"], 2)
        # Parity at the detection scale, where both searched the same pixels.
        boxes, probs = ref.detect(small)
        row["parity"] = parity(det.detect(small), boxes, probs)
    return row


def print_table(rows: dict) -> None:
    print(f"{'clip':6s} {'frames':>6s} {'ours b1':>8s} {'ours bN':>8s} {'coarse':>8s} {'facenet best (mode)':>26s} "
          f"{'ratio':>6s} {'cpu ratio':>9s} {'coarse ratio':>12s}  parity")
    for name, r in rows.items():
        fps, n, par = r["fps"], r["frames"], r.get("parity", {})
        ref = max((v for k, v in fps.items() if k.startswith("facenet")), default=None)
        ref_text = f"{ref:.2f} ({r['facenet_best_mode'][8:]})" if ref else "-"
        print(f"{name:6s} {n:6d} {fps['ours_b1']:8.2f} {fps[f'ours_b{n}']:8.2f} {fps['ours_coarse']:8.2f} "
              f"{ref_text:>26s} {r.get('ratio_batched_vs_facenet_best', '-'):>6} "
              f"{r.get('cpu_ratio_batched_vs_facenet_best', '-'):>9} {r.get('ratio_coarse_vs_facenet_best', '-'):>12}"
              f"  {par.get('frames_same_count', '-')} frames same count, IoU>={par.get('min_iou')}, "
              f"dprob<={par.get('max_prob_diff')}   [{r['source']}]")
    print("frames/s, wall clock; ours includes downscaling to the detection size, facenet gets the frames already "
          "downscaled; ratio = facenet best / ours batched (the whole search); cpu ratio: the same in CPU seconds; "
          "coarse: the default coarse-first search (the subject's boxes of the whole search; fewer other faces)")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1080p only, 4 frames, one timed run")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--clips", default=",".join(SIZES), help="which of 1080p,720p,480p to run")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frames, repeat = (4, 1) if args.quick else (args.frames, args.repeat)
    clips = ["1080p"] if args.quick else [c for c in args.clips.split(",") if c in SIZES]
    cfg = FaceConfig(coarse_min_face=0)          # the whole search: what facenet-pytorch does, for parity
    det = FaceDetector(cfg, device=args.device)
    coarse = FaceDetector(FaceConfig(), device=args.device)
    ref = reference_detector(cfg, args.device)
    rows = {name: bench_clip(name, frames, repeat, det, coarse, ref) for name in clips}
    print_table(rows)
    payload = {"command": " ".join(["python bench/faces.py", *(argv if argv is not None else sys.argv[1:])]),
               "device": args.device, "detector": det.describe(), "frames": frames, "repeat": repeat,
               "clips": rows}
    name = "faces" if not args.threads else f"faces_threads{args.threads}"
    print("saved", save(name, payload))
    return payload


if __name__ == "__main__":
    main()
