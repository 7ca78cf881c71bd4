"""Sample T frames evenly over a whole video, exactly, decoding as little as the codec allows.

Targets are ``round(linspace(0, n - 1, T))`` over the n frames a full decode outputs (``stages.probe``
counts frames, not packets). Two schemes, recorded in a store's identity:

- ``noref`` (the default): each target snaps to the nearest frame a decoder run with ``-skip_frame noref``
  outputs (distinct frames; a collision takes the next nearest), and that cheaper decode is used: it skips
  the frames no other frame refers to (about half of them in the dev clips' H.264, 30-40% less decoding at
  1080p) and the frames it does output are bit-identical to a full decode's. Videos where it gains nothing
  (all-intra or no B-frames: fewer than ``MIN_SKIP`` of the frames skipped; VP9 and MPEG-4, whose headers say
  nothing; fewer decodable frames than T) are sampled strictly, per video, the same way every time.
- ``strict``: exactly the targets, from a full decode (the first release's sampling).

One ffmpeg pass converts only the selected frames to RGB (a ``select`` filter before the conversion),
picked by their exact pts; ``showinfo`` reports the pts of every frame delivered, and a frame other than the
planned one is an error, never silently used. ffmpeg applies rotation metadata itself (autorotate).
"""
from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from stages.media import MediaError, ffmpeg_cmd
from stages.probe import VideoInfo, probe

SCHEMES = {"noref": "linspace-nearest-noref-v2", "strict": "linspace-strict-v2"}   # identity names
MIN_SKIP = 0.2   # noref must skip at least this share of the frames to be worth a second code path

_SHOWINFO = re.compile(r"\] n:\s*(\d+) pts:\s*(-?\d+) pts_time:\s*(-?[\d.e+-]+)")


@dataclass(frozen=True)
class Plan:
    mode: str                # "noref" or "strict": how this video is decoded
    indices: np.ndarray      # (K,) presentation indices, ascending, distinct
    targets: np.ndarray      # (K,) the evenly spaced indices they were snapped from
    pts: np.ndarray          # (K,) int64 pts of the chosen frames
    reason: str


@dataclass(frozen=True)
class SampledFrames:
    frames: np.ndarray      # (K, H, W, 3) uint8 RGB, K <= T (short videos give all their frames)
    indices: np.ndarray     # (K,) int64 frame index in the video (presentation order)
    timestamps: np.ndarray  # (K,) float64 seconds
    info: VideoInfo
    mode: str               # "noref" | "strict"


def frame_indices(n_frames: int, n: int) -> np.ndarray:
    """``n`` frame indices spread evenly from the first to the last frame; every frame if there are fewer."""
    if n_frames <= n:
        return np.arange(n_frames, dtype=np.int64)
    return np.round(np.linspace(0, n_frames - 1, n)).astype(np.int64)   # distinct since n_frames > n


def snap(targets: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Each target -> the nearest allowed index not taken yet (ties: the earlier frame); ascending."""
    cand = np.flatnonzero(allowed)
    used = np.zeros(allowed.size, bool)
    out = []
    for t in targets:
        for c in cand[np.lexsort((cand, np.abs(cand - t)))]:      # by distance, then by index
            if not used[c]:
                used[c] = True
                out.append(c)
                break
    return np.array(sorted(out), np.int64)


def plan(info: VideoInfo, T: int, scheme: str = "noref") -> Plan:
    """Which frames of this video to decode, and how."""
    if scheme not in SCHEMES:
        raise ValueError(f"sampling {scheme!r}: expected one of {', '.join(SCHEMES)}")
    n = info.n_frames
    targets = frame_indices(n, T)
    reason = "strict sampling requested"
    if scheme == "noref":
        skip = 1 - info.n_decodable / max(n, 1)
        if n <= T:
            reason = f"{n} frames <= T={T}: every frame"
        elif not info.noref_supported:
            reason = f"no reference information for {info.codec}: strict"
        elif info.n_decodable < T:
            reason = f"only {info.n_decodable} of {n} frames decodable without the others: strict"
        elif skip < MIN_SKIP:
            reason = f"noref would skip only {skip:.0%} of the frames: strict"
        else:
            idx = snap(targets, info.decodable)
            return Plan("noref", idx, targets, info.pts[idx], f"noref skips {skip:.0%} of the frames")
    return Plan("strict", targets, targets, info.pts[targets], reason)


def decode_command(path: str, p: Plan, info: VideoInfo, threads: int = 0) -> list[str]:
    by_pts = info.pts_exact
    expr = "+".join(f"eq(pts,{int(v)})" if by_pts else f"eq(n,{int(i)})" for v, i in zip(p.pts, p.indices))
    cmd = [*ffmpeg_cmd(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "repeat+info"]
    if threads:
        cmd += ["-threads", str(threads)]
    if p.mode == "noref":
        cmd += ["-skip_frame", "noref"]
    return cmd + ["-i", str(path), "-map", "0:v:0", "-vf", f"select='{expr}',showinfo=checksum=0",
                  "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


class _Stderr(threading.Thread):
    """Drains ffmpeg's stderr (so it never blocks) and collects showinfo's (pts, pts_time) as they come."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines, self.shown = stream, [], []

    def run(self) -> None:
        for raw in self.stream:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            m = _SHOWINFO.search(line)
            if m:
                self.shown.append((int(m[2]), float(m[3])))


def iter_frames(path, p: Plan, info: VideoInfo, out: np.ndarray, threads: int = 0,
                shown: list | None = None) -> Iterator[int]:
    """Decode the planned frames into ``out`` (K, H, W, 3), yielding each slot k as soon as it is filled:
    a consumer may start on the first frame long before ffmpeg has finished. At the end the delivered pts
    are checked against the plan (``MediaError`` on a frame other than the planned one). A file that ends
    early (truncated) keeps the frames it delivered, if they are the plan's first ones."""
    K = len(p.indices)
    size = info.width * info.height * 3
    proc = subprocess.Popen(decode_command(str(path), p, info, threads), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    err = _Stderr(proc.stderr)
    err.start()
    k = 0
    try:
        while k < K:
            view, got = memoryview(out[k]).cast("B"), 0
            while got < size:
                r = proc.stdout.readinto(view[got:])
                if not r:
                    break
                got += r
            if got < size:
                break
            yield k
            k += 1
        proc.stdout.read()
    finally:
        if proc.poll() is None and k < K:    # the consumer stopped early
            proc.kill()
        rc = proc.wait()
        err.join()
        proc.stdout.close()
        proc.stderr.close()
    if shown is not None:
        shown.extend(err.shown)
    if k == 0:
        lines = [ln.strip() for ln in err.lines if ln.strip() and "showinfo" not in ln]
        raise MediaError(f"decoding failed: {lines[-1] if lines else 'ffmpeg exit ' + str(rc)}"
                         if rc else "no frame could be decoded")
    got_pts = [v for v, _ in err.shown][:k]
    if info.pts_exact and got_pts != [int(v) for v in p.pts[:k]]:
        raise MediaError(f"ffmpeg delivered other frames than planned (pts {got_pts[:4]}... for "
                         f"{p.pts[:4].tolist()}...)")


def sample_frames(path, n: int, scheme: str = "noref", info: VideoInfo | None = None, threads: int = 0,
                  pool: "FramePool | None" = None) -> SampledFrames:
    """Decode ``n`` evenly spaced frames of ``path``; raises MediaError with a one-line reason.

    ``pool``: where the frame buffer comes from (page-faulting a fresh 100 MB array for every 1080p video
    costs CPU); give the frames back to it when done with them.
    """
    info = info or probe(path)
    p = plan(info, n, scheme)
    K = len(p.indices)
    shape = (info.height, info.width, 3)
    out = pool.take(K, shape) if pool is not None else np.empty((K, *shape), np.uint8)
    shown: list = []
    k = 0
    try:
        for k in iter_frames(path, p, info, out, threads, shown):
            pass
    except BaseException:
        if pool is not None:
            pool.give(out)
        raise
    got = k + 1
    stamps = np.array([t for _, t in shown[:got]], np.float64)
    if len(stamps) != got:
        stamps = (p.pts[:got] * float(info.time_base)).astype(np.float64)
    # A truncated file can deliver fewer frames than planned: the caller marks the rest missing.
    return SampledFrames(out[:got], p.indices[:got], stamps, info, p.mode)


class FramePool:
    """Reusable frame buffers for ``sample_frames(out=...)``, one list per frame shape, thread-safe.

    ``take`` hands out a buffer of at least K frames; ``give`` returns it once its frames are no longer
    needed. At most ``keep`` free buffers are kept per shape, so memory is bounded by what is in use.
    """

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def take(self, k: int, shape: tuple[int, int, int]) -> np.ndarray:
        with self._lock:
            free = self._free.get(shape, [])
            for i, buf in enumerate(free):
                if len(buf) >= k:
                    return free.pop(i)
        return np.empty((k, *shape), np.uint8)

    def give(self, frames: np.ndarray) -> None:
        buf = frames.base if frames.base is not None else frames
        if not isinstance(buf, np.ndarray) or buf.ndim != 4:
            return
        with self._lock:
            free = self._free.setdefault(tuple(buf.shape[1:]), [])
            if len(free) < self.keep:
                free.append(buf)
