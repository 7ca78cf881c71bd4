"""Tiny generated media for tests: every clip is made here, with the project's own ffmpeg resolution."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from stages.media import ffmpeg_exe


def _run(args: list[str]) -> None:
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True)
    assert res.returncode == 0, res.stderr.decode()


def write_frames(path: Path, frames: np.ndarray, fps: int = 10, rotate: int | None = None,
                 lossless: bool = False) -> Path:
    """Encode (N, H, W, 3) uint8 RGB frames as H.264 mp4 (one keyframe per 250 frames, like real clips)."""
    n, h, w, _ = frames.shape
    quality = ["-qp", "0", "-preset", "ultrafast"] if lossless else ["-crf", "18", "-preset", "veryfast"]
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:",
            "-c:v", "libx264", *quality, "-pix_fmt", "yuv420p", "-g", "250"]
    target = path.with_name(path.stem + ".norot.mp4") if rotate is not None else path
    args += [str(target)]
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
                         input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    assert res.returncode == 0, res.stderr.decode()
    if rotate is not None:   # display-matrix side data only, pixels untouched (what phones write)
        _run(["-display_rotation", str(rotate), "-i", str(target), "-c", "copy", str(path)])
        target.unlink()
    return path


def counter_clip(path: Path, n: int, size=(48, 64), fps: int = 10, step: int = 2) -> Path:
    """Frame i is uniform grey (step * i) % 256: a decoded frame's mean tells which frame it is."""
    values = (np.arange(n) * step % 256).astype(np.uint8)
    frames = np.broadcast_to(values[:, None, None, None], (n, *size, 3))
    return write_frames(path, frames, fps=fps, lossless=True)


def audio_only(path: Path) -> Path:
    _run(["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(path)])
    return path


def text_file(path: Path) -> Path:
    path.write_text("this is not a video\n" * 20)
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncated(src: Path, path: Path, keep: float = 0.3) -> Path:
    data = src.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path
