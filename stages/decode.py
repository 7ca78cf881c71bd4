"""Sample T frames evenly over a whole video, decoding once and converting only the frames kept.

Measured choice (bench/decode.py): one decoding pass with a ``select`` filter placed before the RGB
conversion. Seeking per frame re-decodes from the previous keyframe each time (4-6x slower on clips with
one keyframe per 250 frames) and input seeking (-ss before -i) returned wrong frames; a full decode that
converts every frame to RGB costs ~40% more at 1080p. ffmpeg applies rotation metadata itself (autorotate).
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import ffmpeg
import numpy as np

from stages.media import MediaError, VideoInfo, ffmpeg_exe, probe

_PTS = re.compile(r"pts_time:\s*(-?[\d.]+)")


@dataclass(frozen=True)
class SampledFrames:
    frames: np.ndarray      # (K, H, W, 3) uint8 RGB, K <= T (short videos give all their frames)
    indices: np.ndarray     # (K,) int64 frame index in the video
    timestamps: np.ndarray  # (K,) float64 seconds
    info: VideoInfo


def frame_indices(n_frames: int, n: int) -> np.ndarray:
    """``n`` frame indices spread evenly from the first to the last frame; every frame if there are fewer."""
    if n_frames <= n:
        return np.arange(n_frames, dtype=np.int64)
    return np.round(np.linspace(0, n_frames - 1, n)).astype(np.int64)   # distinct since n_frames > n


def _select_expr(indices: np.ndarray) -> str:
    return "+".join(f"eq(n\\,{i})" for i in indices)


def decode_command(path: str, indices: np.ndarray, threads: int = 0) -> list[str]:
    stream = ffmpeg.input(path, threads=threads, nostdin=None)
    stream = stream.video.filter("select", _select_expr(indices).replace("\\,", ",")).filter("showinfo")
    out = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    return out.global_args("-hide_banner", "-nostats").compile(cmd=ffmpeg_exe())


def sample_frames(path, n: int, info: VideoInfo | None = None, threads: int = 0) -> SampledFrames:
    """Decode ``n`` evenly spaced frames of ``path``; raises MediaError with a one-line reason."""
    info = info or probe(path)
    wanted = frame_indices(info.n_frames, n)
    res = subprocess.run(decode_command(str(path), wanted, threads), capture_output=True)
    err = res.stderr.decode("utf-8", errors="replace")
    frame_bytes = info.width * info.height * 3
    got = len(res.stdout) // frame_bytes
    if res.returncode != 0 and got == 0:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        raise MediaError(f"decoding failed: {lines[-1].strip() if lines else 'ffmpeg exit ' + str(res.returncode)}")
    if got == 0:
        raise MediaError("no frame could be decoded")
    frames = np.frombuffer(res.stdout[:got * frame_bytes], np.uint8).reshape(got, info.height, info.width, 3)
    pts = [float(t) for t in _PTS.findall(err)][:got]
    stamps = np.array(pts, dtype=np.float64) if len(pts) == got else wanted[:got] / max(info.fps, 1e-9)
    # A truncated file can yield fewer frames than its packet count promised: keep the ones decoded (they
    # come out in index order), and the caller marks the rest missing rather than repeating any.
    return SampledFrames(frames, wanted[:got], stamps, info)
