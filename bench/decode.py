"""Decode strategies for T evenly spaced frames: one pass + select filter (ours) vs full decode + convert
everything vs per-frame output seeking. Prints seconds per clip and checks each returns the same pixels.

    .venv/bin/python bench/decode.py [--frames 16] [--repeat 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import best_of, save, target_clips  # noqa: E402
from stages.decode import frame_indices, sample_frames  # noqa: E402
from stages.media import ffmpeg_exe, probe  # noqa: E402


def full_decode(path, idx, info):
    """Every frame converted to RGB and piped; keep the wanted ones (what OpenCV-style readers do)."""
    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)
    return frames[idx]


def seek_each(path, idx, info):
    """One ffmpeg per frame, output seeking to the frame's timestamp (exact but re-decodes from a keyframe)."""
    out = []
    for i in idx:
        cmd = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-ss", f"{i / info.fps:.6f}", "-frames:v", "1",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
        out.append(np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.uint8)
                   .reshape(info.height, info.width, 3))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = {}
    for name, path in target_clips().items():
        info = probe(path)
        idx = frame_indices(info.n_frames, args.frames)
        ours = sample_frames(path, args.frames, info).frames
        row = {"frames_in_clip": info.n_frames}
        for label, fn in (("select", lambda: sample_frames(path, args.frames, info)),
                          ("full_decode", lambda: full_decode(path, idx, info)),
                          ("seek_each", lambda: seek_each(path, idx, info))):
            row[label] = round(best_of(fn, args.repeat), 3)
        row["same_pixels"] = bool(np.array_equal(ours, full_decode(path, idx, info)))
        row["seek_same_pixels"] = bool(np.array_equal(ours, seek_each(path, idx, info)))
        rows[name] = row
        print(f"{name:6s} select {row['select']:.3f}s  full {row['full_decode']:.3f}s  "
              f"seek {row['seek_each']:.3f}s  exact(full)={row['same_pixels']} exact(seek)={row['seek_same_pixels']}")
    print("saved", save("decode", {"frames": args.frames, "seconds": rows}))


if __name__ == "__main__":
    main()
