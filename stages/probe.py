"""What a video holds, frame by frame, without decoding it: one ffmpeg stream copy.

H.264 (nearly every corpus) takes one process with three outputs of the framecrc muxer, ~0.03 s at 1080p:

    ffmpeg -i FILE -map 0:v:0 -c copy -f framecrc pipe:1
                   -map 0:v:0 -c copy -bsf:v filter_units=pass_types=1-5 -f framecrc pipe:3
                   -map 0:v:0 -c copy -bsf:v filter_units=discard=nonref,filter_units=pass_types=1-5 -f framecrc pipe:4

every packet; the packets that hold a slice; the packets left when the frames with nal_ref_idc == 0 are
dropped (the decoder's own noref rule, below). Other codecs, or an H.264 stream whose packets cannot be told
apart by pts, take the general path (~0.06 s more), whose header trace tells the same for H.264:

    ffmpeg -loglevel repeat+debug -i FILE -map 0:v:0 -c copy -bsf:v trace_headers -f framecrc -

``tests/test_media.py`` checks that both paths agree on H.264 clips and that the frames called decodable are
exactly those a ``-skip_frame noref`` decode outputs.

- stdout (the framecrc muxer): one line per packet in decode order with its pts and flags; ``F=0x4``
  (AV_PKT_FLAG_DISCARD) marks edit-list pre-roll, which the decoder decodes but never shows. A stream-copied
  cut of an MP4 has such packets: counting packets instead of frames overcounts (110 packets, 77 frames on a
  3 s cut of a dev clip), so frames are what is counted here.
- stderr: the stream banner (codec, size, fps, rotation, duration) and, from the trace_headers bitstream
  filter, each packet's NAL/OBU headers. They tell which frames a decoder run with ``-skip_frame noref``
  outputs, by the decoder's own rule (checked in FFmpeg's sources and, frame by frame, against real decodes):
    * H.264 (h264dec.c): NAL units with nal_ref_idc == 0 are skipped, so a picture is output iff its slices
      have nal_ref_idc != 0;
    * HEVC (ff_hevc_nal_is_nonref): the sub-layer non-reference VCL types (even types 0..14) are skipped;
      RASL pictures of a stream starting at a CRA/BLA are never output;
    * AV1 through libdav1d: shown frames with refresh_frame_flags == 0 are skipped unless they are key
      frames; show_existing_frame is always output;
    * anything else (VP9's decoder ignores noref; MPEG-4 part 2 has no header parser): unsupported, the
      caller samples strictly.
  ``repeat`` keeps ffmpeg from folding identical lines into "Last message repeated N times".

Presentation index = rank of the pts among the displayed frames. Streams without usable pts (AVI, duplicate
pts from a broken mux) get ``pts_exact=False``: their frames are counted from the packets, and only strict
sampling by frame index is used.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from stages.media import MediaError, container_problem, ffmpeg_cmd, not_a_file, short_reason

NOREF_CODECS = ("h264", "hevc", "av1")
_DISCARD = 0x4
_NOPTS = -(2 ** 63)                              # AV_NOPTS_VALUE as framecrc prints it
_HEVC_NONREF = {0, 2, 4, 6, 8, 10, 12, 14}       # ff_hevc_nal_is_nonref
_HEVC_RASL = {8, 9}
_HEVC_IRAP = range(16, 24)                       # BLA_W_LP .. RSV_IRAP_23
_HEVC_CRA, _HEVC_EOS = 21, 36

_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+).*?, (?P<w>\d{1,5})x(?P<h>\d{1,5})")
_FPS = re.compile(r"(?P<fps>[\d.]+)(?P<k>k?) fps")
_TBR = re.compile(r"(?P<fps>[\d.]+)(?P<k>k?) tbr")
_DURATION = re.compile(r"Duration: (?:(?P<h>\d+):(?P<m>\d+):(?P<s>[\d.]+)|N/A)(?:, start: (?P<start>-?[\d.]+))?")
_ROTATION = re.compile(r"(?:Display Matrix|displaymatrix): rotation of (?P<deg>-?[\d.]+) degrees")
_CRC_TB = re.compile(r"^#tb \d+: (\d+)/(\d+)", re.M)
_CRC_PKT = re.compile(r"^\d+,\s*(-?\d+),\s*(-?\d+),\s*(-?\d+),\s*(\d+),\s*0x[0-9a-f]+(?:, F=0x([0-9A-Fa-f]+))?", re.M)
_NAL_H264 = re.compile(r"nal_unit_type: (\d+)\(.*?\), nal_ref_idc: (\d+)")
_NAL_HEVC = re.compile(r"nal_unit_type: (\d+)\(.*?\), nuh_layer_id: (\d+), temporal_id: (\d+)")
_AV1_FIELD = re.compile(r"\d+\s+(obu_type|show_existing_frame|frame_type|show_frame|refresh_frame_flags)\s+[01]+ = (\d+)")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    codec: str
    width: int               # display size (after rotation: ffmpeg's autorotate delivers frames so)
    height: int
    fps: float               # nominal (banner); ``pts`` has the real timing of variable-rate streams
    rotation: int            # degrees from the display matrix, 0/90/180/270
    duration: float          # seconds (banner)
    time_base: Fraction      # of ``pts``
    pts: np.ndarray          # (n,) int64 displayed frames in presentation order
    decodable: np.ndarray    # (n,) bool: output by a decoder run with -skip_frame noref
    noref_supported: bool    # False: ``decodable`` is all True and says nothing
    n_packets: int           # packets in the stream, pre-roll included
    pts_exact: bool = True   # False: no usable pts (e.g. AVI); ``pts`` is 0..n-1 and frames go by index

    @property
    def n_frames(self) -> int:
        """Frames a full decode outputs (not packets)."""
        return int(self.pts.size)

    @property
    def n_decodable(self) -> int:
        return int(self.decodable.sum())


def _banner(err: str) -> dict | None:
    """Stream facts from the *input* part of ffmpeg's banner; None when it shows no video stream."""
    head = err.split("Output #0", 1)[0]
    m = _STREAM.search(head)
    if m is None:
        return None
    line = head[m.start():].splitlines()[0]
    fps = _FPS.search(line) or _TBR.search(line)
    fps_v = float(fps.group("fps")) * (1000 if fps.group("k") else 1) if fps else 0.0
    d = _DURATION.search(head)
    duration = (int(d.group("h")) * 3600 + int(d.group("m")) * 60 + float(d.group("s"))) if d and d.group("h") else 0.0
    r = _ROTATION.search(head[m.start():])
    rotation = int(round(float(r.group("deg")))) % 360 if r else 0
    w, h = int(m.group("w")), int(m.group("h"))
    if rotation in (90, 270):                     # autorotate swaps width and height
        w, h = h, w
    return dict(codec=m.group("codec"), width=w, height=h, fps=fps_v, rotation=rotation, duration=duration)


def _no_video(path: Path, err: str) -> MediaError:
    """The reason a file that ffmpeg lists no video stream in cannot be used, in a user's words."""
    damage = container_problem(path)
    if damage:
        return MediaError(damage)
    head = err.split("Output #0", 1)[0]
    if "Input #" in head and "Stream #" not in head:
        return MediaError("damaged file: the container opens but holds no readable stream")
    if "Stream #" not in head:
        return MediaError(f"not a readable media file: {short_reason(err)}")
    if "Audio:" in head:
        return MediaError("no video stream (audio only)")
    return MediaError("no video stream (only subtitle or data streams)")


def _packet_blocks(err: str) -> list[str]:
    """stderr text of each packet: the trace_headers lines from one ``Packet:`` line to the next."""
    blocks, cur = [], None
    for ln in err.splitlines():
        if not ln.startswith("[trace_headers @"):
            continue
        if "] Packet: " in ln:
            if cur is not None:
                blocks.append("\n".join(cur))
            cur = [ln]
        elif cur is not None:
            cur.append(ln)
    if cur is not None:
        blocks.append("\n".join(cur))
    return blocks


def _h264_ref(block: str) -> bool | None:
    """nal_ref_idc != 0 for the packet's slices; None if the packet holds no slice."""
    refs = [int(r) for t, r in _NAL_H264.findall(block) if 1 <= int(t) <= 5]
    return None if not refs else any(refs)


def _hevc_types(block: str) -> list[int]:
    """NAL unit types of the base layer, in order (VCL types are < 32)."""
    return [int(t) for t, layer, _ in _NAL_HEVC.findall(block) if int(layer) == 0]


def _av1_shown_is_ref(block: str) -> bool | None:
    """Would libdav1d with -skip_frame noref output this temporal unit's shown frame? None if it shows none."""
    result, obu, frame_type, awaiting = None, None, None, False
    for name, val in _AV1_FIELD.findall(block):
        v = int(val)
        if name == "obu_type":
            if awaiting:                       # a shown frame whose refresh_frame_flags was not coded:
                result, awaiting = True, False  # KEY or SWITCH, which refresh every slot
            obu = v
            continue
        if obu not in (3, 6):                  # OBU_FRAME_HEADER / OBU_FRAME (not redundant headers)
            continue
        if name == "show_existing_frame" and v == 1:
            result = True
        elif name == "frame_type":
            frame_type = v
        elif name == "show_frame" and v == 1:
            awaiting = True
        elif name == "refresh_frame_flags" and awaiting:
            result, awaiting = (v != 0 or frame_type == 0), False
    return True if awaiting else result


def _decodable(codec: str, blocks: list[str], shown: np.ndarray) -> np.ndarray:
    """(packets,) bool: output under -skip_frame noref; ``shown`` loses packets that show no picture."""
    if codec == "h264":
        r = [_h264_ref(b) for b in blocks]
        shown &= np.array([x is not None for x in r])
        return np.array([bool(x) for x in r])
    if codec == "hevc":
        types = [_hevc_types(b) for b in blocks]
        vcl = [[t for t in ts if t < 32] for ts in types]
        shown &= np.array([bool(v) for v in vcl])
        ref = np.array([bool(v) and v[0] not in _HEVC_NONREF for v in vcl])
        # RASL pictures of a CRA that starts a coded video sequence (the first picture, or the first after
        # an end-of-sequence NAL) or of a BLA are not output (NoRaslOutputFlag = 1).
        no_rasl, after_eos = False, True
        for i, (ts, v) in enumerate(zip(types, vcl)):
            if v:
                if v[0] in _HEVC_IRAP:
                    no_rasl = v[0] != _HEVC_CRA or after_eos
                elif v[0] in _HEVC_RASL and no_rasl:
                    shown[i] = False
                after_eos = False
            if _HEVC_EOS in ts:
                after_eos = True
        return ref
    r = [_av1_shown_is_ref(b) for b in blocks]
    shown &= np.array([x is not None for x in r])
    return np.array([bool(x) for x in r])


_SLICES = "filter_units=pass_types=1-5"                     # H.264 coded slice NAL units
_REF_SLICES = "filter_units=discard=nonref," + _SLICES       # ... of the frames noref decoding keeps


def _read_fd(fd: int, into: list) -> None:
    with os.fdopen(fd, "rb") as f:
        into.append(f.read())


def _h264_outputs(path: Path, timeout: float) -> tuple[str, str, str, str] | None:
    """(stderr, framecrc of every packet, of the slice packets, of the reference-slice packets), or None
    when ffmpeg refuses (not H.264: filter_units has no parser for MPEG-4 part 2, for example)."""
    pipes = [os.pipe(), os.pipe()]
    cmd = [*ffmpeg_cmd(), "-hide_banner", "-nostdin", "-loglevel", "info", "-i", str(path),
           "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "pipe:1"]
    for (_, w), bsf in zip(pipes, (_SLICES, _REF_SLICES)):
        cmd += ["-map", "0:v:0", "-c", "copy", "-bsf:v", bsf, "-f", "framecrc", f"pipe:{w}"]
    got: list[list] = [[], []]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=[w for _, w in pipes])
    except OSError:
        for r, _ in pipes:
            os.close(r)
        raise
    finally:
        for _, w in pipes:
            os.close(w)
    readers = [threading.Thread(target=_read_fd, args=(r, into), daemon=True) for (r, _), into in zip(pipes, got)]
    for t in readers:
        t.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise MediaError(f"ffmpeg took over {timeout:.0f} s to read the file's packets") from None
    finally:
        for t in readers:
            t.join()
    if proc.returncode != 0 or not all(got):
        return None
    text = lambda b: b.decode("utf-8", "replace")  # noqa: E731
    return text(err), text(out), text(got[0][0]), text(got[1][0])


def _packet_pts(out: str) -> set[int]:
    return {int(p[1]) for p in _CRC_PKT.findall(out)}


def probe(path, timeout: float = 120) -> VideoInfo:
    """Every displayed frame of the first video stream and whether noref decoding outputs it; a
    ``MediaError`` with a one-line reason when the file cannot be used as a video."""
    path = Path(path)
    why = not_a_file(path)
    if why:
        raise MediaError(why)
    fast = _h264_outputs(path, timeout)
    if fast is not None:
        info = _banner(fast[0])
        if info is not None and info["codec"] == "h264":
            pts = np.array([int(p[1]) for p in _CRC_PKT.findall(fast[1])], np.int64)
            if pts.size and not np.any(pts == _NOPTS) and np.unique(pts).size == pts.size:
                slices, refs = _packet_pts(fast[2]), _packet_pts(fast[3])
                has_slice = np.array([v in slices for v in pts.tolist()], bool)
                ref = np.array([v in refs for v in pts.tolist()], bool)
                return _info(path, info, fast[1], ref, has_slice, True)
    return _probe_traced(path, timeout)


def _probe_traced(path: Path, timeout: float) -> VideoInfo:
    """The general path: every codec, NAL/OBU headers from ffmpeg's trace_headers bitstream filter."""
    base = [*ffmpeg_cmd(), "-hide_banner", "-nostdin", "-loglevel", "repeat+debug", "-i", str(path),
            "-map", "0:v:0", "-c", "copy"]
    try:
        res = subprocess.run(base + ["-bsf:v", "trace_headers", "-f", "framecrc", "-"], capture_output=True,
                             timeout=timeout)
        err = res.stderr.decode("utf-8", "replace")
        traced = res.returncode == 0
        if not traced and _banner(err) is not None:   # no header parser for this codec (e.g. MPEG-4 part 2)
            res = subprocess.run(base + ["-f", "framecrc", "-"], capture_output=True, timeout=timeout)
            err = res.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        raise MediaError(f"ffmpeg took over {timeout:.0f} s to read the file's packets") from None
    info = _banner(err)
    if info is None:
        raise _no_video(path, err)
    if res.returncode != 0:
        raise MediaError(container_problem(path) or f"ffmpeg could not read the video stream: {short_reason(err)}")
    out = res.stdout.decode("utf-8", "replace")
    n = len(_CRC_PKT.findall(out))
    ref, has_slice = np.ones(n, bool), np.ones(n, bool)
    supported = traced and info["codec"] in NOREF_CODECS
    if supported:
        blocks = _packet_blocks(err)
        if len(blocks) == n:
            ref = _decodable(info["codec"], blocks, has_slice)
        else:
            supported = False              # cannot align the trace with the packets: do not guess
    return _info(path, info, out, ref, has_slice, supported)


def _info(path: Path, info: dict, out: str, ref: np.ndarray, has_picture: np.ndarray, supported: bool
          ) -> VideoInfo:
    """VideoInfo from the framecrc text of every packet and, per packet (decode order), whether noref
    decoding outputs it and whether it holds a picture at all."""
    tb = _CRC_TB.search(out)
    time_base = Fraction(int(tb.group(1)), int(tb.group(2))) if tb else Fraction(1, 1)
    pk = _CRC_PKT.findall(out)
    if not pk:
        raise MediaError("video stream holds no frames")
    pts = np.array([int(p[1]) for p in pk], np.int64)
    flags = np.array([int(p[4], 16) if p[4] else 1 for p in pk])   # framecrc omits F= when flags == KEY
    shown = ((flags & _DISCARD) == 0) & has_picture
    key = (flags & 1) == 1
    untimed = pts == _NOPTS
    if supported and untimed.any():
        # An open-GOP cut stored without an edit list (e.g. MKV) can start with leading pictures the muxer
        # left without pts; the decoder does not output them. Only when they all precede the second keyframe.
        keys = np.flatnonzero(key)
        second_key = keys[1] if keys.size > 1 else len(pk)
        lead = untimed & shown
        if not lead.any() or (np.flatnonzero(lead).max() < second_key and (shown & ~untimed).any()):
            shown &= ~untimed
    pts, ref = pts[shown], ref[shown]
    exact = not np.any(pts == _NOPTS) and np.unique(pts).size == pts.size
    if exact:
        order = np.argsort(pts, kind="stable")
        pts, ref = pts[order], ref[order]
    else:
        supported, pts = False, np.arange(pts.size, dtype=np.int64)
    if not supported:
        ref = np.ones(pts.size, bool)
    if pts.size == 0:
        raise MediaError("video stream holds no frames")
    fps = info["fps"] or (pts.size / info["duration"] if info["duration"] else 0.0)
    return VideoInfo(str(path), info["codec"], info["width"], info["height"], fps,
                     info["rotation"], info["duration"], time_base, pts, ref, supported, len(pk), exact)
