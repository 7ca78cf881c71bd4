"""The one module that owns ffmpeg: which binary to run, and what a video file holds.

Binary resolution order: ``$FFMPEG_BINARY``, then ``ffmpeg`` on PATH, then the static binary that the
``imageio-ffmpeg`` wheel ships. Before ffmpeg ever opens a path, ``not_a_file`` and ``container_problem`` say
in a user's words what is wrong with it (a FIFO, a broken link, an MP4 cut short); ``stages.probe`` reads
what a video holds and ``stages.decode`` decodes it.

Stage one's ffmpeg processes are started behind ``setpriv --pdeathsig KILL`` where it exists (util-linux), so
a writer killed with SIGKILL takes its ffmpeg with it instead of leaving it decoding for seconds.
"""
from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
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
def ffmpeg_cmd() -> list[str]:
    """The argv prefix that starts ffmpeg as a child that dies with this process."""
    setpriv = shutil.which("setpriv")
    return ([setpriv, "--pdeathsig", "KILL"] if setpriv and os.name == "posix" else []) + [ffmpeg_exe()]


@functools.lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True)
    first = (out.stdout or "").splitlines()[:1]
    return first[0] if first else "unknown"


def short_reason(stderr: str) -> str:
    """ffmpeg's last meaningful stderr line."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "ffmpeg failed"


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a video file (never opening it: a FIFO would block), or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "broken symbolic link" if path.is_symlink() else f"no such file: {path}"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a video file"
    if stat.S_ISFIFO(st.st_mode):
        return "not a regular file (a FIFO)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device or socket)"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


_ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"meta", b"moof", b"mfra",
              b"styp", b"sidx", b"pdin", b"prft"}


def container_problem(path: Path) -> str | None:
    """For MP4/MOV files: a top-level box that runs past the end of the file (a cut-short download or copy),
    or an index (moov) that is missing; None when the boxes are whole or the file is not ISO-BMFF."""
    size = path.stat().st_size
    seen, offset = [], 0
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            return None
        while offset < size:
            fh.seek(offset)
            header = fh.read(16)
            if len(header) < 8:
                return f"truncated file: it ends {len(header)} bytes into a box header at byte {offset}"
            box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if box_size == 1 and len(header) >= 16:
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = size - offset
            if kind not in _ISO_BOXES or box_size < 8:
                return None                                # not a box we know: leave it to ffmpeg
            seen.append(kind)
            if offset + box_size > size:
                return (f"truncated file: its {kind.decode()} box needs {offset + box_size} bytes but the file "
                        f"ends at {size} ({100 * size / (offset + box_size):.0f}%)")
            offset += box_size
    if b"moov" not in seen and b"moof" not in seen:
        return "damaged file: no moov box (the MP4 index) anywhere in it"
    return None
