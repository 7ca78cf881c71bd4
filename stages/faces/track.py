"""One subject per video: the face seen through most of the video, followed across its sampled frames, smoothed.

Deepfake detectors look at one face per video (DeepfakeBench, the DFDC winner); when several people are in
the shot, the face followed must stay the same person from frame to frame. A face continues the subject in
the next frame by overlap with one of the subject's last boxes, or by centre distance when the box has moved
too far to overlap (``_match``). A face that appears somewhere else (a second person entering) matches
neither, so it cannot take the track over; a frame with no match is marked missing.

Which face is the subject (``FaceConfig.subject``, issue 18):

- ``track`` (the default): every confident face seeds a candidate track, followed forwards and backwards from
  its frame, and each frame's faces are compared with the track's last two boxes (the latest first), so a
  one-frame head jerk does not break the track: the frame after it still continues the frame before it; only
  a face of a like size (SIZE_RATIO) continues it. The track with the largest weight is the subject (ties:
  the larger seed): the sum of its box sides (square root of the area) where it was found, plus the sides
  interpolated over its gaps of at most MAX_GAP frames (``_span_score``). A confident one-frame false
  positive, however large, loses to a face seen in most frames; of two people seen throughout, the larger
  one wins, also when dim light hides it in a few frames. On the 21 dev clips (16 frames each) the subject
  is found in 333 of 336 frames against 304 for ``largest`` (README, "Subject"). A subject lost for long
  stretches of a degraded copy can lose to a similar-sized face found in more frames, which the
  largest-face rule would not do.
- ``largest``: the rule before issue 18: the largest confident face, followed from its last box only.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stages.faces.config import Detections, FaceConfig

_MEMORY = {"track": 2, "largest": 1}     # boxes of the track a frame's faces are compared with
SIZE_RATIO = 1.6     # subject="track": a face continues a track only with a side within [1/r, r] x the last one's


@dataclass(frozen=True)
class Track:
    boxes: np.ndarray      # (T, 4) float32 x1, y1, x2, y2 of the subject, smoothed; NaN where missing
    probs: np.ndarray      # (T,) float32 detection probability; 0 where missing
    found: np.ndarray      # (T,) bool
    chosen: np.ndarray     # (T,) int64 index into that frame's Detections; -1 where missing
    seed: int = -1         # the frame the subject was followed from; -1 when there is none

    def __len__(self) -> int:
        return len(self.found)

    @classmethod
    def missing(cls, n: int) -> "Track":
        return cls(np.full((n, 4), np.nan, np.float32), np.zeros(n, np.float32), np.zeros(n, bool),
                   np.full(n, -1, np.int64))


def _area(boxes: np.ndarray) -> np.ndarray:
    """(...,) area of boxes (..., 4)."""
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with (n, 4) boxes -> (n,); of (m, 4) boxes with (n, 4) boxes -> (m, n)."""
    a = box[..., None, :]                                   # (1, 4) or (m, 1, 4)
    lt = np.maximum(a[..., :2], boxes[:, :2])
    rb = np.minimum(a[..., 2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    union = _area(a) + _area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def centre_distance(last: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Distance of each box's centre (boxes (n, 4)) from the centre of ``last``, in sides of ``last``: (n,) for
    one (4,) box, (m, n) for (m, 4) boxes."""
    a = last[..., None, :]                                  # (1, 4) or (m, 1, 4)
    side = np.sqrt(np.maximum(_area(a), 1e-9))
    centre = (a[..., :2] + a[..., 2:]) / 2
    return np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - centre, axis=-1) / side


def _match(last: np.ndarray, boxes: np.ndarray, cfg: FaceConfig) -> int | np.ndarray:
    """Index of the box in ``boxes`` (n, 4) that continues a subject last seen at ``last`` (4,), or -1: the best
    overlap if it reaches ``track_iou``, else the nearest centre within ``track_dist``; under the track rule
    only among faces whose side is within SIZE_RATIO of the last one's. For (m, 4) ``last`` boxes, (m,)
    int64: the answer for each."""
    if not len(boxes):
        return -1 if last.ndim == 1 else np.full(len(last), -1, np.int64)
    iou = _iou(last, boxes)                                 # (n,) or (m, n)
    dist = centre_distance(last, boxes)
    if cfg.subject == "track":                  # and of a like size: a face twice as big is someone else
        ratio = np.sqrt(np.maximum(_area(boxes), 1e-9) / np.maximum(_area(last[..., None, :]), 1e-9))
        alike = (ratio <= SIZE_RATIO) & (ratio >= 1 / SIZE_RATIO)
        iou, dist = np.where(alike, iou, 0.0), np.where(alike, dist, np.inf)
    by_iou, by_dist = iou.argmax(axis=-1), dist.argmin(axis=-1)
    ok_iou = np.take_along_axis(iou, np.expand_dims(by_iou, -1), -1)[..., 0] >= cfg.track_iou
    ok_dist = np.take_along_axis(dist, np.expand_dims(by_dist, -1), -1)[..., 0] <= cfg.track_dist
    out = np.where(ok_iou, by_iou, np.where(ok_dist, by_dist, -1)).astype(np.int64)
    return int(out) if last.ndim == 1 else out


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


@dataclass(frozen=True)
class _Faces:
    """A video's faces in one list: frame t's are rows start[t]:start[t + 1] of boxes."""
    boxes: np.ndarray       # (B, 4) float32
    probs: np.ndarray       # (B,) float32
    start: np.ndarray       # (T + 1,) int64

    @classmethod
    def of(cls, dets: Sequence[Detections]) -> "_Faces":
        start = np.concatenate([[0], np.cumsum([len(d) for d in dets])]).astype(np.int64)
        boxes = np.concatenate([d.boxes for d in dets]) if len(dets) else np.zeros((0, 4), np.float32)
        probs = np.concatenate([d.probs for d in dets]) if len(dets) else np.zeros(0, np.float32)
        return cls(boxes.reshape(-1, 4), probs, start)

    def row(self, t: int, i: int) -> int:
        return int(self.start[t] + i)

    def continuations(self, cfg: FaceConfig) -> list[list[int]]:
        """nxt[b][t]: the row of frame t's face that continues a subject last seen at row b (``_match``), or -1.
        (B, T) matches, computed once; the tracks below only look them up."""
        n = len(self.start) - 1
        nxt = np.full((len(self.boxes), n), -1, np.int64)
        for t in range(n):
            lo, hi = self.start[t], self.start[t + 1]
            if hi > lo and len(self.boxes):
                i = _match(self.boxes, self.boxes[lo:hi], cfg)
                nxt[:, t] = np.where(i >= 0, i + lo, -1)
        return nxt.tolist()


def _follow(step: Callable[[tuple[int, ...], int], int], n: int, t0: int, b0: int, memory: int
            ) -> tuple[list[int], list[tuple[int, ...]]]:
    """Follow a subject seeded at row b0 of frame t0 forwards, then backwards: (chosen row per frame or -1,
    the rows each frame was compared with, latest first). ``step(recent, t)`` is the row of frame t that
    continues ``recent`` or -1; only found frames change what is remembered (the last ``memory`` rows)."""
    chosen, compared = [-1] * n, [()] * n
    chosen[t0] = b0
    for order in (range(t0 + 1, n), range(t0 - 1, -1, -1)):
        recent = (b0,)
        for t in order:
            compared[t] = recent
            b = step(recent, t)
            if b >= 0:
                chosen[t], recent = b, (b, *recent)[:memory]
    return chosen, compared


def _best_track(faces: _Faces, dets: Sequence[Detections], cfg: FaceConfig) -> tuple[int, list[int]] | None:
    """(seed frame, chosen row per frame or -1) of the subject under ``cfg.subject``; None without faces."""
    n = len(dets)
    memory = _MEMORY[cfg.subject]
    confident = np.flatnonzero(faces.probs >= cfg.min_prob)
    if cfg.subject == "largest" or not len(confident):
        seed = _seed(dets, cfg.min_prob)
        if seed is None:
            return None
        seeds = [faces.row(*seed)]
    else:                                       # every confident face, the largest first (ties: frame order)
        seeds = confident[np.argsort(-_area(faces.boxes[confident]), kind="stable")].tolist()
    nxt = faces.continuations(cfg)
    frame = np.repeat(np.arange(n), np.diff(faces.start)).tolist()
    sides = np.sqrt(_area(faces.boxes)).tolist()

    def step(recent: tuple[int, ...], t: int) -> int:
        for b in recent:
            if nxt[b][t] >= 0:
                return nxt[b][t]
        return -1

    best, score = None, -1.0
    for b0 in seeds:
        chosen, _ = _follow(step, n, frame[b0], b0, memory)
        s = _span_score(chosen, sides)
        if s > score:                           # strictly: a tie keeps the larger seed
            best, score = (frame[b0], chosen), s
    return best


MAX_GAP = 4         # sampled frames: a longer gap between two sightings of a track adds nothing to its weight


def _span_score(chosen: list[int], sides: list[float]) -> float:
    """A candidate track's weight: the sum of its face sides where it was found, plus the sides interpolated
    across each gap of at most MAX_GAP frames between two sightings. The person seen on both sides of a
    short gap is taken to be there in it: a face lost in a few dim frames keeps its weight against a smaller
    face found in all of them. A long gap adds nothing (three sightings in frames 0, 1 and 10 of a noisy crowd
    would otherwise outweigh the subject seen in 13), nor do frames before the first or after the last."""
    t = [i for i, b in enumerate(chosen) if b >= 0]
    found = [sides[chosen[i]] for i in t]
    gaps = sum((b - a - 1) * (x + y) / 2 for a, b, x, y in zip(t, t[1:], found, found[1:]) if b - a - 1 <= MAX_GAP)
    return sum(found) + gaps


def subject_seed(dets: Sequence[Detections], cfg: FaceConfig | None = None) -> tuple[int, int] | None:
    """(frame, index into its Detections) of the face ``select_subject`` follows the subject from; None when
    there is no face."""
    cfg = cfg or FaceConfig()
    faces = _Faces.of(dets)
    best = _best_track(faces, dets, cfg)
    if best is None:
        return None
    t0, rows = best
    return t0, rows[t0] - int(faces.start[t0])


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
    faces = _Faces.of(dets)
    best = _best_track(faces, dets, cfg)
    if best is None:
        return Track.missing(n)
    t0, rows = best
    chosen = np.array([b - faces.start[t] if b >= 0 else -1 for t, b in enumerate(rows)], np.int64)
    found = chosen >= 0
    raw = np.full((n, 4), np.nan, np.float32)
    probs = np.zeros(n, np.float32)
    raw[found], probs[found] = faces.boxes[np.array(rows)[found]], faces.probs[np.array(rows)[found]]
    boxes = smooth_boxes(raw, found, cfg.smooth)
    h, w = frame_hw
    # Keep the box's centre inside the frame (a face may run off the edge; its centre may not).
    boxes[found] = _clamp_centre(boxes[found], h, w)
    return Track(boxes.astype(np.float32), probs, found, chosen, t0)


def reference_boxes(dets: Sequence[Detections], track: Track, cfg: FaceConfig | None = None) -> np.ndarray:
    """(T, 2, 4): for every frame, the subject boxes ``select_subject`` compared that frame's faces with (raw
    boxes of the track, the latest first: the last two found between the seed and this frame under the
    ``track`` rule, the last one under ``largest``); NaN where there is none, at the seed frame, and
    everywhere when there is no subject. A detector that searched only part of a frame needs to have searched
    around these boxes to be sure the subject is missing there."""
    cfg = cfg or FaceConfig()
    n = len(dets)
    out = np.full((n, 2, 4), np.nan, np.float32)
    if track.seed < 0:
        return out
    faces = _Faces.of(dets)
    rows = [faces.row(t, int(i)) if i >= 0 else -1 for t, i in enumerate(track.chosen)]
    _, compared = _follow(lambda recent, t: rows[t], n, track.seed, rows[track.seed], _MEMORY[cfg.subject])
    for t, recent in enumerate(compared):
        out[t, :len(recent)] = faces.boxes[list(recent)]
    return out


def _clamp_centre(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    shift = np.clip(centre, 0, [w, h]) - centre
    return boxes + np.concatenate([shift, shift], axis=1)
