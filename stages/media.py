"""The one module that owns ffmpeg: which binary to run, and what a video file holds.

Binary resolution order: ``$FFMPEG_BINARY``, then ``ffmpeg`` on PATH, then the static binary that the
``imageio-ffmpeg`` wheel ships. Metadata is read from ``ffmpeg -i`` itself (imageio-ffmpeg ships no ffprobe):
stream info from its banner, and an exact frame count from a stream copy (packets, no decoding).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import PipelineError


class MediaError(PipelineError):
    """A file ffmpeg cannot use as a video; the message is one line a user can act on."""


def resolve_ffmpeg(env: dict[str, str] | None = None) -> str:
    """Path of the ffmpeg binary to run (see module docstring for the order)."""
    env = os.environ if env is None else env
    explicit = env.get("FFMPEG_BINARY")
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise MediaError(f"FFMPEG_BINARY={explicit!r} is not an executable file")
        return found
    on_path = shutil.which("ffmpeg", path=env.get("PATH"))
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise MediaError("no ffmpeg: set FFMPEG_BINARY, put ffmpeg on PATH, or pip install imageio-ffmpeg") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The resolved binary, cached for the process (resolve_ffmpeg() is the uncached form)."""
    return resolve_ffmpeg()


@functools.lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True)
    first = (out.stdout or "").splitlines()[:1]
    return first[0] if first else "unknown"


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int          # display width, after rotation
    height: int         # display height, after rotation
    fps: float
    n_frames: int       # exact count of video packets (frames) in the first video stream
    duration: float     # seconds
    rotation: int       # degrees from the display matrix (ffmpeg applies it when decoding)
    codec: str


_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+).*?, (?P<w>\d{2,5})x(?P<h>\d{2,5})")
_FPS = re.compile(r"(?P<fps>[\d.]+) (?:fps|tbr)")
_DURATION = re.compile(r"Duration: (?P<h>\d+):(?P<m>\d+):(?P<s>[\d.]+)")
_ROTATION = re.compile(r"(?:rotation of |rotate\s*:\s*)(?P<deg>-?[\d.]+)")
_FRAMES = re.compile(r"frame=\s*(?P<n>\d+)")


def _short_reason(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "ffmpeg failed"


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's stream metadata and exact frame count; raise MediaError if it is not a video."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")
    # One call: the banner on stderr describes the streams, and copying the first video stream to the null
    # muxer counts its packets without decoding anything.
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
           "-f", "null", "-"]
    res = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    err = res.stderr
    stream = _STREAM.search(err)
    if stream is None:
        if res.returncode != 0 and "Stream #" not in err:
            raise MediaError(f"not a readable media file: {_short_reason(err)}")
        raise MediaError("no video stream (audio-only or unsupported file)")
    if res.returncode != 0:
        raise MediaError(f"ffmpeg could not read the video stream: {_short_reason(err)}")
    line = err[stream.start():].splitlines()[0]
    fps_match = _FPS.search(line)
    fps = float(fps_match.group("fps")) if fps_match else 0.0
    dur = _DURATION.search(err)
    duration = (int(dur.group("h")) * 3600 + int(dur.group("m")) * 60 + float(dur.group("s"))) if dur else 0.0
    frames = _FRAMES.findall(err)
    n_frames = int(frames[-1]) if frames else 0
    rot = _ROTATION.search(err)
    rotation = int(round(float(rot.group("deg")))) % 360 if rot else 0
    w, h = int(stream.group("w")), int(stream.group("h"))
    if rotation in (90, 270):
        w, h = h, w
    if n_frames == 0:
        raise MediaError("video stream holds no frames")
    if fps <= 0 and duration > 0:
        fps = n_frames / duration
    return VideoInfo(str(path), w, h, fps, n_frames, duration, rotation, stream.group("codec"))
