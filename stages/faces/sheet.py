"""Contact sheet: each sampled frame with every detection drawn, and the subject's crop beside it.

This is how a user sees why a video had no face: too small, too dark, below a threshold, or another person.
Chosen face in green, other detections in orange, landmarks as dots, probability above each box; a face
found by the second look (``stages.faces.second_look``) in cyan. Each frame's label says where its subject
box came from (search, second look, none) in the same colours, and a frame without one has a red cross on
its crop.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.core.atomic import write_bytes
from features import schema
from stages.faces.config import Detections
from stages.faces.second_look import sources
from stages.faces.track import Track

CHOSEN, OTHER, MISSING, SECOND = (40, 220, 80), (255, 150, 30), (220, 40, 40), (40, 200, 255)
SOURCE_COLOURS = {schema.SEARCH: CHOSEN, schema.SECOND_LOOK: SECOND, schema.NOWHERE: MISSING}


def _panel(frame: np.ndarray, dets: Detections, chosen: int, width: int, label: str, source: int,
           second: np.ndarray | None, prob: float) -> Image.Image:
    """One frame scaled to ``width`` px with its detections drawn, and the second look's box if any."""
    h, w = frame.shape[:2]
    s = width / max(w, 1)
    img = Image.fromarray(frame).resize((width, max(1, round(h * s))), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for i in range(len(dets)):
        colour = CHOSEN if i == chosen else OTHER
        box = (dets.boxes[i] * s).tolist()
        draw.rectangle(box, outline=colour, width=2)
        draw.text((box[0], max(0, box[1] - 11)), f"{dets.probs[i]:.3f}", fill=colour)
        for x, y in dets.landmarks[i] * s:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    if second is not None and source == schema.SECOND_LOOK:
        box = (second * s).tolist()
        draw.rectangle(box, outline=SECOND, width=3)
        draw.text((box[0], max(0, box[1] - 11)), f"{prob:.3f}", fill=SECOND)
    draw.text((4, 2), label, fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    name = {schema.SEARCH: "subject: search", schema.SECOND_LOOK: "subject: second look",
            schema.NOWHERE: "subject: none"}[source]
    draw.text((4, 14), name, fill=SOURCE_COLOURS[source], stroke_width=1, stroke_fill=(0, 0, 0))
    return img


def contact_sheet(frames: np.ndarray, dets: Sequence[Detections], track: Track, crops: np.ndarray,
                  valid: np.ndarray, path: str | Path, labels: Sequence[str] | None = None,
                  width: int = 320, second: np.ndarray | None = None) -> Path:
    """Write a PNG with one row per frame: the annotated frame, then its crop (red cross when missing).
    ``second`` (T, 4): the second look's raw boxes (NaN where it found nothing), drawn in cyan."""
    n = len(frames)
    labels = labels or [f"frame {t}" for t in range(n)]
    source = sources(track)
    panels = [_panel(frames[t], dets[t], int(track.chosen[t]), width, labels[t], int(source[t]),
                     None if second is None else second[t], float(track.probs[t])) for t in range(n)]
    row_h = max((p.height for p in panels), default=1)
    side = min(row_h, crops.shape[1] if len(crops) else row_h)
    sheet = Image.new("RGB", (width + side + 12, max(1, n * (row_h + 4))), (24, 24, 24))
    for t, panel in enumerate(panels):
        y = t * (row_h + 4)
        sheet.paste(panel, (0, y))
        tile = Image.fromarray(crops[t]).resize((side, side), Image.BILINEAR)
        if not valid[t]:
            draw = ImageDraw.Draw(tile)
            draw.line((0, 0, side, side), fill=MISSING, width=3)
            draw.line((0, side, side, 0), fill=MISSING, width=3)
            draw.text((4, 4), "no subject", fill=MISSING)
        sheet.paste(tile, (width + 8, y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())
    return path
