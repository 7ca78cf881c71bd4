"""Square face crops around a subject's track, the input the backbone sees.

The crop is a square of side ``margin`` x the longer side of the face box (1.3, as FaceForensics++ and
DeepfakeBench), centred on the box, shifted to stay inside the frame (shrunk only when the frame is
smaller than the square), and resized with antialiasing to ``crop`` pixels.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stages.faces.track import Track


def square_window(box: np.ndarray, h: int, w: int, margin: float) -> tuple[int, int, int, int]:
    """(4,) box -> (y0, y1, x0, x1) integer square inside an h x w frame."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * margin
    side = int(round(min(max(side, 1.0), h, w)))
    x0 = int(round(min(max(cx - side / 2, 0), w - side)))
    y0 = int(round(min(max(cy - side / 2, 0), h - side)))
    return y0, y0 + side, x0, x0 + side


def _resize(patch: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (size, size, 3) uint8; antialiased bilinear (area-like when shrinking)."""
    x = torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def crop_faces(frames: np.ndarray, track: Track, crop: int = 224, margin: float = 1.3,
               fallback: str = "missing") -> tuple[np.ndarray, np.ndarray]:
    """frames (T, H, W, 3) uint8 -> crops (T, crop, crop, 3) uint8, valid (T,) bool.

    Frames where the subject is missing are zeros and invalid with ``fallback="missing"``; with
    ``fallback="frame"`` they are the whole frame resized to the square, and valid.
    """
    frames = np.asarray(frames)
    if len(frames) != len(track):
        raise ValueError(f"{len(frames)} frames but a track of {len(track)}")
    if fallback not in ("missing", "frame"):
        raise ValueError(f"fallback must be 'missing' or 'frame', got {fallback!r}")
    n = len(frames)
    crops = np.zeros((n, crop, crop, 3), np.uint8)
    valid = np.zeros(n, bool)
    for t in range(n):        # one resize per sampled frame (T is small); detection is the batched part
        h, w = frames[t].shape[:2]
        if track.found[t]:
            y0, y1, x0, x1 = square_window(track.boxes[t], h, w, margin)
            crops[t], valid[t] = _resize(frames[t, y0:y1, x0:x1], crop), True
        elif fallback == "frame":
            crops[t], valid[t] = _resize(frames[t], crop), True
    return crops, valid
