"""Generated face clips for the second look's tests: people from the package-shipped photos in a dim room.

The photos are the sample generator's (skimage's astronaut, matplotlib's Grace Hopper); the room, the light
and the motion are made here, and darker footage is made from a clip with ffmpeg's ``eq`` filter, as a dark
camera or a grading would.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage import transform

from pipeline.sample import photo_pixels
from tests.clips import _run, write_frames

H, W = 360, 640


def person(index: int, face_side: float) -> tuple[np.ndarray, np.ndarray]:
    """Photo ``index`` scaled so its face box is ``face_side`` px wide: (h, w, 3) float32, box (4,)."""
    img, box = photo_pixels(index, False)
    s = face_side / (box[2] - box[0])
    return transform.rescale(img, s, channel_axis=2, anti_aliasing=True).astype(np.float32), np.array(box) * s


def _paste(canvas: np.ndarray, img: np.ndarray, x: int, y: int, xmin: int = 0, xmax: int = W) -> None:
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0, xmin), max(y, 0), min(x + w, W, xmax), min(y + h, H)
    canvas[y0:y1, x0:x1] = img[y0 - y:y1 - y, x0 - x:x1 - x]


@dataclass(frozen=True)
class Person:
    photo: int                      # index into the sample's photos (0 astronaut, 1 Grace Hopper)
    face: float                     # face box width in pixels
    x: float                        # face centre, as a fraction of the frame width
    gain: float = 1.0               # this person's light, on top of the frame's
    absent: tuple[int, ...] = ()    # frames this person is not in (the room shows through)


def room(n: int, people: list[Person], light: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8: ``people`` standing in a dim room, swaying a little; frame t lit by ``light[t]``
    (a multiplier), with sensor noise. Each photo is cut at the midline between neighbouring faces, so no one
    covers another's face."""
    rng = np.random.default_rng(seed)
    shots = [person(p.photo, p.face) for p in people]
    edges = [0] + [int((a.x + b.x) / 2 * W) for a, b in zip(people, people[1:])] + [W]
    frames = []
    for t in range(n):
        c = np.full((H, W, 3), 70.0, np.float32)
        c[:, :, 0] += 10                                       # warm light
        for k, (p, (img, box)) in enumerate(zip(people, shots)):
            if t in p.absent:
                continue
            dx, dy = 8 * np.sin(t / 2 + k), 4 * np.cos(t / 3 + k)
            x = int(p.x * W - (box[0] + box[2]) / 2 + dx)
            y = int(H * 0.45 - (box[1] + box[3]) / 2 + dy)
            _paste(c, img * p.gain, x, y, edges[k], edges[k + 1])
        c = c * light[t] + rng.normal(0, 2.0, c.shape)
        frames.append(np.clip(c, 0, 255).astype(np.uint8))
    return np.stack(frames)


def face_clip(path: Path, people: list[Person], light, n: int = 12) -> Path:
    return write_frames(path, room(n, people, np.asarray(light, np.float32)), fps=8)


def darken(src: Path, path: Path, eq: str) -> Path:
    """The clip through ffmpeg's ``eq`` filter (e.g. ``gamma=0.4``), re-encoded as H.264."""
    _run(["-i", str(src), "-vf", f"eq={eq}", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast",
          "-pix_fmt", "yuv420p", str(path)])
    return path
