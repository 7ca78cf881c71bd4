"""One subject per video: pick the largest confident face, follow it across the sampled frames, smooth it.

Deepfake detectors look at one face per video (DeepfakeBench, the DFDC winner); when several people are in
the shot, the face followed must stay the same person from frame to frame. The subject is seeded at the
largest confident face, then followed outwards from that frame by overlap with its last known box, or by
centre distance when the box has moved too far to overlap. A face that appears somewhere else (a second
person entering) matches neither, so it cannot take the track over; a frame with no match is marked missing.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stages.faces.config import Detections, FaceConfig


@dataclass(frozen=True)
class Track:
    boxes: np.ndarray      # (T, 4) float32 x1, y1, x2, y2 of the subject, smoothed; NaN where missing
    probs: np.ndarray      # (T,) float32 detection probability; 0 where missing
    found: np.ndarray      # (T,) bool
    chosen: np.ndarray     # (T,) int64 index into that frame's Detections; -1 where missing

    def __len__(self) -> int:
        return len(self.found)

    @classmethod
    def missing(cls, n: int) -> "Track":
        return cls(np.full((n, 4), np.nan, np.float32), np.zeros(n, np.float32), np.zeros(n, bool),
                   np.full(n, -1, np.int64))


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with (n, 4) boxes."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    union = _area(box[None])[0] + _area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _seed(dets: Sequence[Detections], min_prob: float) -> tuple[int, int] | None:
    """(frame, index) of the largest face with prob >= min_prob; the largest of any face if none is."""
    for floor in (min_prob, 0.0):
        best, where = -1.0, None
        for t, d in enumerate(dets):
            if not len(d):
                continue
            area = np.where(d.probs >= floor, _area(d.boxes), -1.0)
            i = int(np.argmax(area))
            if area[i] > best:
                best, where = float(area[i]), (t, i)
        if where is not None:
            return where
    return None


def centre_distance(last: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n,) distance of each box's centre (boxes (n, 4)) from the centre of ``last`` (4,), in sides of ``last``."""
    side = np.sqrt(max(_area(last[None])[0], 1e-9))
    centre = (last[:2] + last[2:]) / 2
    return np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - centre, axis=1) / side


def _match(last: np.ndarray, boxes: np.ndarray, cfg: FaceConfig) -> int:
    """Index of the box in ``boxes`` (n, 4) that continues a subject last seen at ``last`` (4,), or -1: the best
    overlap if it reaches ``track_iou``, else the nearest centre within ``track_dist``."""
    if not len(boxes):
        return -1
    iou = _iou(last, boxes)
    i = int(np.argmax(iou))
    if iou[i] >= cfg.track_iou:
        return i
    dist = centre_distance(last, boxes)
    i = int(np.argmin(dist))
    return i if dist[i] <= cfg.track_dist else -1


def smooth_boxes(boxes: np.ndarray, found: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of centre and size over the frames where the subject was found.

    boxes (T, 4), found (T,) -> (T, 4); missing frames stay NaN and do not pull their neighbours. Sampled
    frames are far apart in time, so the window is small (3 by default): it calms detector jitter without
    lagging a moving face.
    """
    out = np.full_like(boxes, np.nan, dtype=np.float32)
    idx = np.flatnonzero(found)
    if window <= 1 or len(idx) == 0:
        out[idx] = boxes[idx]
        return out
    b = boxes[idx].astype(np.float64)
    cs = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)   # (k, 4) cx, cy, w, h
    half = window // 2
    sm = np.stack([cs[max(0, j - half):j + half + 1].mean(axis=0) for j in range(len(idx))])
    out[idx] = np.concatenate([sm[:, :2] - sm[:, 2:] / 2, sm[:, :2] + sm[:, 2:] / 2], axis=1)
    return out


def select_subject(dets: Sequence[Detections], frame_hw: tuple[int, int], cfg: FaceConfig | None = None
                   ) -> Track:
    """Choose and follow one subject through a video's sampled frames (T = len(dets))."""
    cfg = cfg or FaceConfig()
    n = len(dets)
    seed = _seed(dets, cfg.min_prob)
    if seed is None:
        return Track.missing(n)
    chosen = np.full(n, -1, np.int64)
    t0, chosen[seed[0]] = seed[0], seed[1]
    for order in (range(t0 + 1, n), range(t0 - 1, -1, -1)):     # forwards, then backwards from the seed
        last = dets[t0].boxes[seed[1]]
        for t in order:
            i = _match(last, dets[t].boxes, cfg)
            if i >= 0:
                chosen[t], last = i, dets[t].boxes[i]
    found = chosen >= 0
    raw = np.full((n, 4), np.nan, np.float32)
    probs = np.zeros(n, np.float32)
    for t in np.flatnonzero(found):
        raw[t], probs[t] = dets[t].boxes[chosen[t]], dets[t].probs[chosen[t]]
    boxes = smooth_boxes(raw, found, cfg.smooth)
    h, w = frame_hw
    # Keep the box's centre inside the frame (a face may run off the edge; its centre may not).
    boxes[found] = _clamp_centre(boxes[found], h, w)
    return Track(boxes.astype(np.float32), probs, found, chosen)


def reference_boxes(dets: Sequence[Detections], track: Track, cfg: FaceConfig | None = None) -> np.ndarray:
    """(T, 4): for every frame, the subject box ``select_subject`` compared that frame's faces with (its raw
    box in the nearest frame between the seed and this one where it was found); NaN at the seed frame and
    everywhere when there is no subject. A detector that searched only part of a frame needs to have
    searched around this box to be sure the subject is missing there."""
    cfg = cfg or FaceConfig()
    n = len(dets)
    out = np.full((n, 4), np.nan, np.float32)
    seed = _seed(dets, cfg.min_prob)
    if seed is None:
        return out
    t0 = seed[0]
    for order in (range(t0 + 1, n), range(t0 - 1, -1, -1)):
        last = dets[t0].boxes[seed[1]]
        for t in order:
            out[t] = last
            if track.chosen[t] >= 0:
                last = dets[t].boxes[track.chosen[t]]
    return out


def _clamp_centre(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    shift = np.clip(centre, 0, [w, h]) - centre
    return boxes + np.concatenate([shift, shift], axis=1)
