"""Decoding T evenly spaced frames: the noref scheme (ours, default) and strict sampling, against decoding and
converting every frame, with the pure decodes that bound them; and a check that every frame delivered is the
full decode's frame of the same index, byte for byte.

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
from stages.decode import sample_frames  # noqa: E402
from stages.media import ffmpeg_exe  # noqa: E402
from stages.probe import probe  # noqa: E402


def every_frame(path, info) -> np.ndarray:
    """Every frame decoded and converted to RGB (what OpenCV-style readers do)."""
    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)


def null_decode(path, noref: bool) -> None:
    pre = ["-skip_frame", "noref"] if noref else []
    subprocess.run([ffmpeg_exe(), "-v", "error", *pre, "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                   check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = {}
    for name, path in target_clips().items():
        info = probe(path)
        ref = every_frame(path, info)
        row = {"frames_in_clip": info.n_frames, "decodable_under_noref": info.n_decodable}
        for scheme in ("noref", "strict"):
            s = sample_frames(path, args.frames, scheme, info=info)
            row[f"{scheme}_mode"] = s.mode
            row[f"{scheme}_exact"] = all(np.array_equal(f, ref[i]) for f, i in zip(s.frames, s.indices))
            row[f"{scheme}_max_shift"] = int(np.abs(s.indices - np.round(
                np.linspace(0, info.n_frames - 1, args.frames))).max())
        for label, fn in (("probe", lambda: probe(path)),
                          ("noref", lambda: sample_frames(path, args.frames, "noref", info=info)),
                          ("strict", lambda: sample_frames(path, args.frames, "strict", info=info)),
                          ("every_frame_rgb", lambda: every_frame(path, info)),
                          ("null_full", lambda: null_decode(path, False)),
                          ("null_noref", lambda: null_decode(path, True))):
            row[label] = round(best_of(fn, args.repeat), 3)
        rows[name] = row
        print(f"{name:6s} probe {row['probe']:.2f}s  noref {row['noref']:.2f}s  strict {row['strict']:.2f}s  "
              f"every frame {row['every_frame_rgb']:.2f}s | pure decode {row['null_full']:.2f}s, noref "
              f"{row['null_noref']:.2f}s | exact: noref {row['noref_exact']} (max shift {row['noref_max_shift']}), "
              f"strict {row['strict_exact']}", flush=True)
    print("saved", save("decode", {"frames": args.frames, "seconds": rows}))


if __name__ == "__main__":
    main()
