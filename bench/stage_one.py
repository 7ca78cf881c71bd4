"""Stage one end to end against its floor and against peer-style pipelines, on the same real clips.

For each target clip (1080p, 720p, 480p), in one run:
  - ours: FramePipeline (select-filter decode, batched MTCNN, crops, ResNet50) seconds per video;
  - floor: pure decode of the clip (ffmpeg -f null) + the bare backbone on the same crops, same engine;
  - bare ResNet50 images/s on those crops, and our end-to-end frames/s (issue 4's ratio);
  - peers (facenet-pytorch MTCNN, test-only): "seed-style naive" (every frame decoded to RGB, MTCNN on
    full-size frames one at a time, ResNet50 batch 1) and "tuned peer" (MTCNN in batches of 4 on half-size
    frames, ResNet50 channels_last batch 16);
  - bytes per video in a store against the raw float16 size.

    .venv/bin/python bench/stage_one.py [--frames 16] [--crop 224] [--repeat 2] [--no-peers]
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
from bench.common import best_of, save, target_clips  # noqa: E402
from features.store import FeatureStore  # noqa: E402
from stages import extract  # noqa: E402
from stages.decode import frame_indices  # noqa: E402
from stages.faces import FaceConfig, crop_faces, select_subject  # noqa: E402
from stages.media import ffmpeg_exe, probe  # noqa: E402
from stages.preprocess import FeatureConfig, FramePipeline, base_result  # noqa: E402
from pipeline.datasets import VideoEntry  # noqa: E402


def pure_decode(path: Path) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null", "-"], check=True)


def ours(pipe: FramePipeline, path: Path):
    entry = VideoEntry(path.name, str(path), 0, "test", path.name)
    sampled = pipe.decode(str(path))
    prepared = pipe.prepare(base_result(entry), sampled)
    pipe.embed([prepared])
    return prepared


def read_all_rgb(path: Path, info) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "pipe:"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)


def peer(path: Path, model, frames: int, crop: int, tuned: bool) -> float:
    """One peer-style pass over a clip; returns seconds."""
    from facenet_pytorch import MTCNN
    from PIL import Image
    mtcnn = MTCNN(keep_all=True, device="cpu", thresholds=[0.6, 0.7, 0.7], min_face_size=20)
    t0 = time.perf_counter()
    info = probe(path)
    video = read_all_rgb(path, info)
    picked = video[frame_indices(len(video), frames)]
    if tuned:
        half = [np.asarray(Image.fromarray(f).resize((f.shape[1] // 2, f.shape[0] // 2))) for f in picked]
        boxes = []
        for s in range(0, len(half), 4):
            b, _ = mtcnn.detect(np.stack(half[s:s + 4]))
            boxes += [None if x is None else x * 2 for x in b]
    else:
        boxes = [mtcnn.detect(Image.fromarray(f))[0] for f in picked]
    crops = []
    for f, b in zip(picked, boxes):
        if b is None:
            continue
        x1, y1, x2, y2 = [int(v) for v in b[0]]
        face = f[max(y1, 0):max(y2, 1), max(x1, 0):max(x2, 1)]
        crops.append(np.asarray(Image.fromarray(face).resize((crop, crop))))
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        if tuned:
            model(x.contiguous(memory_format=torch.channels_last))
        else:
            for i in range(len(x)):
                model(x[i:i + 1].contiguous())
    return time.perf_counter() - t0


def store_bytes(pipe: FramePipeline, clips: dict[str, Path]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        entries = [VideoEntry(f"{k}_{i}", str(p), 0, "test", f"{k}_{i}") for i in range(8)
                   for k, p in clips.items()]
        store = Path(tmp) / "f.h5"
        from features.writer import StoreWriter
        with StoreWriter(store, pipe.provenance(), pipe.identity(), entries) as w:
            t0 = time.perf_counter()
            extract.extract(pipe, w, entries)          # the real pipelined path: decode thread + batches
            pipelined = (time.perf_counter() - t0) / len(entries)
        with FeatureStore.open(store) as st:
            n = len(st.videos())
            raw = n * st.frames * st.dim * 2
            t0 = time.perf_counter()
            feats, _ = st.load([r.video_id for r in st.videos()])
            read = time.perf_counter() - t0
        size = store.stat().st_size
    return {"videos": n, "pipelined_seconds_per_video": round(pipelined, 3), "bytes_per_video": size / n, "raw_fp16_per_video": raw / n, "ratio": size / raw,
            "read_GB_per_s": feats.nbytes / read / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    clips = target_clips()
    cfg = FeatureConfig(frames=args.frames, crop=args.crop, weights="random", precision=args.precision,
                        batch_size=args.frames)
    pipe = FramePipeline(cfg, FaceConfig())
    print(f"engine: {pipe.embedder.describe()}")
    rows = {}
    for name, path in clips.items():
        ours(pipe, path)                                                        # warm-up
        t_ours = best_of(lambda: ours(pipe, path), args.repeat)
        prepared = ours(pipe, path)
        crops = prepared.crops                                                  # (K, C, C, 3)
        t_decode = best_of(lambda: pure_decode(path), args.repeat)
        t_backbone = best_of(lambda: pipe.embedder.embed(crops), args.repeat)
        floor = t_decode + t_backbone
        row = {"seconds_per_video": round(t_ours, 3), "pure_decode": round(t_decode, 3),
               "backbone_on_crops": round(t_backbone, 3), "floor": round(floor, 3),
               "over_floor": round(t_ours / floor, 2), "crops": len(crops),
               "e2e_frames_per_s": round(args.frames / t_ours, 2),
               "bare_resnet_images_per_s": round(len(crops) / t_backbone, 2),
               "e2e_over_bare_resnet": round((args.frames / t_ours) / (len(crops) / t_backbone), 3)}
        if not args.no_peers:
            model = pipe.embedder.model
            row["naive_peer"] = round(min(peer(path, model, args.frames, args.crop, False)
                                          for _ in range(args.repeat)), 3)
            row["tuned_peer"] = round(min(peer(path, model, args.frames, args.crop, True)
                                          for _ in range(args.repeat)), 3)
            row["speedup_vs_naive"] = round(row["naive_peer"] / t_ours, 2)
            row["speedup_vs_tuned"] = round(row["tuned_peer"] / t_ours, 2)
        rows[name] = row
        print(name, row, flush=True)
    storage = store_bytes(pipe, clips)
    mean_floor = sum(r["floor"] for r in rows.values()) / len(rows)
    storage["pipelined_over_mean_floor"] = round(storage["pipelined_seconds_per_video"] / mean_floor, 2)
    print("store and pipelined run (8 copies of each clip):", storage)
    print("saved", save("stage_one", {"frames": args.frames, "crop": args.crop, "engine": pipe.embedder.describe(),
                                      "detector": pipe.detector.describe(), "clips": rows, "store": storage}))


if __name__ == "__main__":
    main()
