"""``predict --annotate``: the video re-encoded with the tracked face box and the verdict drawn on it.

Every frame is decoded through ffmpeg, the box is interpolated between the sampled frames where the subject
was tracked, drawn with PIL, and the frames are piped back into ffmpeg (H.264). Frames stream one at a time.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import ffmpeg
import numpy as np
from PIL import Image, ImageDraw

from pipeline.core.atomic import replacing
from pipeline.core.errors import PipelineError
from stages.media import ffmpeg_cmd


def box_per_frame(res, n_frames: int) -> np.ndarray:
    """(n_frames, 4) boxes linearly interpolated between tracked sampled frames (NaN outside them)."""
    ok = res.mask & (res.frame_index >= 0)
    idx, boxes = res.frame_index[ok], res.boxes[ok]
    out = np.full((n_frames, 4), np.nan, np.float32)
    if len(idx) == 0:
        return out
    frames = np.arange(n_frames)
    inside = (frames >= idx.min()) & (frames <= idx.max())
    for c in range(4):
        out[inside, c] = np.interp(frames[inside], idx, boxes[:, c])
    return out


def annotate_video(res, pred, out: str | Path, single: bool) -> Path:
    out = Path(out)
    if not single or out.suffix.lower() != ".mp4":
        out.mkdir(parents=True, exist_ok=True)
        out = out / (pred.video_id.replace("/", "__").rsplit(".", 1)[0] + ".annotated.mp4")
    w, h = int(res.info["width"]), int(res.info["height"])
    n = int(res.info["video_frames"])
    fps = float(res.info["fps"]) or 25.0
    boxes = box_per_frame(res, n)
    text = (f"{pred.label.upper()}  P(fake)={pred.prob_fake:.2f}" if pred.prob_fake is not None else pred.label)
    colour = (220, 30, 30) if pred.label == "fake" else (30, 180, 60) if pred.label == "real" else (230, 200, 0)
    with replacing(out) as tmp:
        _draw(res, boxes, text, colour, (w, h, n, fps), tmp)
    return out


def _draw(res, boxes: np.ndarray, text: str, colour: tuple, shape: tuple, target: Path) -> None:
    """Decode every frame of the video, draw the box and the verdict, encode to ``target``."""
    w, h, n, fps = shape
    reader = subprocess.Popen(ffmpeg.input(res.path).output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
                              .global_args("-v", "error").compile(cmd=ffmpeg_cmd()), stdout=subprocess.PIPE)
    writer = subprocess.Popen(
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=fps)
        .output(str(target), vcodec="libx264", pix_fmt="yuv420p", crf=20, preset="veryfast")
        .overwrite_output().global_args("-v", "error").compile(cmd=ffmpeg_cmd()),
        stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    i = 0
    while (raw := reader.stdout.read(w * h * 3)) and len(raw) == w * h * 3:
        img = Image.frombuffer("RGB", (w, h), raw)
        draw = ImageDraw.Draw(img)
        if i < n and not np.isnan(boxes[i]).any():
            draw.rectangle([float(v) for v in boxes[i]], outline=colour, width=max(2, w // 200))
        draw.rectangle([0, 0, w, max(14, h // 18)], fill=(0, 0, 0))
        draw.text((4, 2), text, fill=colour)
        writer.stdin.write(img.tobytes())
        i += 1
    writer.stdin.close()
    reader.wait()
    err = writer.stderr.read().decode(errors="replace")
    if writer.wait() != 0 or reader.returncode != 0:
        raise PipelineError(f"annotating {res.path} failed: {err.strip().splitlines()[-1] if err.strip() else 'ffmpeg error'}")
