"""A second look for the subject where the first search missed it but found it in neighbouring frames (issue 18).

Dark, low-contrast footage is the case: the cascade finds the subject in most sampled frames with O-Net
probabilities of 0.7-0.9 and rejects it in the others, where the same face is plainly visible at the same
place. For each such gap frame the box is predicted from the nearest frames where the subject was found
(interpolated in time between the two sides, held when only one side has it), a square region of
``second_look_region`` x the box side around it is cut from the full-resolution frame and resized to
``SIZE`` px in float (averaging recovers levels the 8-bit quantisation of a dark frame lost), and the region
is exposed for the face (``normalise``). The same cascade then searches it with P/R thresholds of 0.5.

What was measured, in the prototype study for issue 18 (an older copy of this detector; 207 darkened gap
frames of the dev clips, 4,458 region searches on clips without a face, share of gap faces found at O-Net
>= 0.9): lower thresholds alone, on the region as it is, 3%; the normalisation below 56%, the best of 15
tried (colour stretches, histogram equalisation, CLAHE, gammas), with no face-free region reaching 0.9 (the
best 0.83). bench/faces_dark.py repeats the comparison on this code (its "thresholds only" column). So the
region is normalised and searched at the lower thresholds, and a face is taken only at O-Net >=
``second_look_accept``.

A face is taken only when the cascade confirms it there and it continues the track as ``track._match``
would (IoU with the predicted box >= track_iou, or centre within track_dist box sides) at a similar size
(within ``_SIZE_RATIO``): another person next to the subject is neither. The predicted box itself is
never a result: a frame where the subject is not visible stays missing. Frames found this way become
anchors for the gaps left (a few rounds), so a run of dark frames at one end is walked into step by step.
A subject never seen at ``_ANCHOR_PROB`` is followed only if a look at its best frame confirms it at that
probability (a face-like texture does not pass). The cost is one small cascade per gap frame and nothing
when every frame was found.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from features import schema
from stages.faces.config import Detections, FaceConfig
from stages.faces.crop import square_window
from stages.faces.detector import FaceDetector
from stages.faces.track import (SIZE_RATIO, Track, _area, _clamp_centre, _iou, _match, centre_distance,
                               smooth_boxes)

SECOND_LOOK = -2        # Track.chosen of a frame found by the second look (not an index into its Detections)
SIZE = 160              # region side in pixels after resizing: a face of about SIZE / region px (64 at 2.5)
_ONE_SIDED = 1.2        # region x this when the gap is at one end of the track (the box is held, not moved)
_THRESHOLDS = (0.5, 0.5)    # P-Net, R-Net inside the region (the first search's 0.6, 0.7 gained nothing)
_SIZE_RATIO = SIZE_RATIO  # a face taken has a side within [1/r, r] x the predicted box's side (the tracker's)
_ANCHOR_PROB = 0.9      # a subject never seen this confidently needs a confirming look first
_ROUNDS = 4             # new finds become anchors for the gaps left
_BLUR = 1.0             # Gaussian sigma (region pixels) against the noise the exposure lifts
_TARGET = 0.45          # mean luma of the predicted box after normalising, as a fraction of 255
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Looked:
    """What the second look did to one video's track."""
    track: Track            # the track with the frames found filled (chosen == SECOND_LOOK there)
    boxes: np.ndarray       # (T, 4) float32 the second look's raw detections, NaN elsewhere
    looked: tuple[int, ...]     # frames searched (a frame may be searched again with new anchors)
    found: tuple[int, ...]      # frames filled
    seconds: float          # wall time spent, the cost reported by the benchmark

    @classmethod
    def nothing(cls, track: Track) -> "Looked":
        """The first search's track as it is (the second look switched off)."""
        return cls(track, np.full((len(track), 4), np.nan, np.float32), (), (), 0.0)


def sources(track: Track) -> np.ndarray:
    """(T,) uint8 where each frame's box came from: schema.SEARCH, schema.SECOND_LOOK or schema.NOWHERE."""
    return np.where(track.chosen == SECOND_LOOK, schema.SECOND_LOOK,
                    np.where(track.found, schema.SEARCH, schema.NOWHERE)).astype(np.uint8)


# ---- normalisation ------------------------------------------------------------------------------------
def normalise(region: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(S, S, 3) float in [0, 255] and the predicted box in region pixels -> (S, S, 3) float, grey.

    Luma only: dark footage keeps full chroma while its luma is crushed, so a colour stretch gives flat,
    saturated red faces. A light blur, then the black point from the region (1st percentile), the white
    point from the box (99th), then a gamma lift that brings the box's mean to _TARGET (never darkening).
    """
    from scipy.ndimage import gaussian_filter   # here: scipy.ndimage costs ~0.5 s of every start-up
    y = gaussian_filter(region @ _LUMA, _BLUR)
    inner = _inner(y, box)
    lo, hi = np.percentile(y, 1), np.percentile(inner, 99)
    y = np.clip((y - lo) * (255.0 / max(hi - lo, 1e-3)), 0, 255)
    mean = float(np.clip(_inner(y, box).mean() / 255.0, 1e-4, 0.999))
    gamma = float(np.clip(np.log(_TARGET) / np.log(mean), 0.2, 1.0))
    y = 255.0 * (y / 255.0) ** gamma
    return np.repeat(y[..., None], 3, axis=2)


def _inner(y: np.ndarray, box: np.ndarray) -> np.ndarray:
    s = y.shape[0]
    x0, y0, x1, y1 = np.clip(np.round(box), 0, s).astype(int)
    if x1 - x0 < 2 or y1 - y0 < 2:           # a box cut to nothing by the frame edge: the centre
        x0 = y0 = s * 3 // 10
        x1 = y1 = s - x0
    return y[y0:y1, x0:x1]


# ---- geometry -----------------------------------------------------------------------------------------
def _cs(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])


def predict_box(raw: np.ndarray, anchors: np.ndarray, t: int) -> tuple[np.ndarray, tuple[int, int], bool]:
    """Subject box (4,) at t from the nearest anchors (raw (T, 4), anchors (T,) bool): (box, (left, right)
    anchor frames or -1, both sides)."""
    idx = np.flatnonzero(anchors)
    left, right = idx[idx < t], idx[idx > t]
    lt = int(left[-1]) if len(left) else -1
    rt = int(right[0]) if len(right) else -1
    if lt >= 0 and rt >= 0:
        a = (t - lt) / (rt - lt)
        c = (1 - a) * _cs(raw[lt]) + a * _cs(raw[rt])          # centre and size, linearly in time
        return np.array([c[0] - c[2] / 2, c[1] - c[3] / 2, c[0] + c[2] / 2, c[1] + c[3] / 2], np.float32), \
            (lt, rt), True
    return raw[lt if lt >= 0 else rt].astype(np.float32), (lt, rt), False


def consistent(pred: np.ndarray, boxes: np.ndarray, cfg: FaceConfig) -> np.ndarray:
    """(n,) bool: boxes (n, 4) that continue a track last seen at ``pred`` (track._match's two rules) at a
    side within _SIZE_RATIO of the predicted one."""
    if not len(boxes):
        return np.zeros(0, bool)
    side = np.sqrt(max(_area(pred[None])[0], 1e-9))
    sides = np.sqrt(np.maximum(_area(boxes), 1e-9))
    ok = (_iou(pred, boxes) >= cfg.track_iou) | (centre_distance(pred, boxes) <= cfg.track_dist)
    return ok & (sides <= side * _SIZE_RATIO) & (sides >= side / _SIZE_RATIO)


# ---- region search ------------------------------------------------------------------------------------
def cut_region(frame: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """Full-resolution window (y0, y1, x0, x1) -> (SIZE, SIZE, 3) float32, antialiased bilinear, unrounded."""
    y0, y1, x0, x1 = window
    x = torch.from_numpy(np.array(frame[y0:y1, x0:x1])).permute(2, 0, 1)[None].float()   # a copy: decoded
    y = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)  # frames
    return y[0].permute(1, 2, 0).numpy()                                                      # are read-only


@functools.lru_cache(maxsize=8)
def _detector(cfg: FaceConfig, device: str) -> FaceDetector:
    return FaceDetector(cfg, device)


def region_detector(detector: FaceDetector, accept: float) -> FaceDetector:
    """The cascade for regions: the same nets, P/R at _THRESHOLDS, O-Net at ``accept``, faces down to the
    smallest side _SIZE_RATIO allows, the whole search on the region as it is (no downscaling)."""
    cfg = detector.cfg
    smallest = SIZE / (cfg.second_look_region * _ONE_SIDED) / _SIZE_RATIO       # px in the region image
    cfg = dataclasses.replace(cfg, min_face=max(12.0, 0.9 * smallest), thresholds=(*_THRESHOLDS, accept),
                              max_side=0, detect_scale=1.0, coarse_min_face=0.0)
    return _detector(cfg, str(detector.device))


def look(frames: np.ndarray, jobs: list[tuple[int, np.ndarray, float]], detector: FaceDetector,
         accept: float, normalised: bool = True) -> list[Detections]:
    """Search each job (frame t, predicted box (4,), region factor) -> Detections in frame pixels per job.
    ``normalised=False`` searches the region as it is (the benchmark's thresholds-only comparison)."""
    if not jobs:
        return []
    h, w = frames.shape[1:3]
    windows, regions = [], []
    for t, pred, k in jobs:
        win = square_window(pred, h, w, k)                                   # (y0, y1, x0, x1)
        x = cut_region(frames[t], win)                                       # (SIZE, SIZE, 3)
        y0, y1, x0, x1 = win
        box = (pred - np.array([x0, y0, x0, y0], np.float32)) * (SIZE / (x1 - x0))   # in region pixels
        if normalised:
            x = normalise(x, box)
        windows.append(win)
        regions.append(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    found = region_detector(detector, accept).detect(np.stack(regions))      # (J, SIZE, SIZE, 3)
    out = []
    for (y0, y1, x0, x1), d in zip(windows, found):
        s = (x1 - x0) / SIZE
        out.append(Detections((d.boxes * s + np.array([x0, y0, x0, y0], np.float32)).astype(np.float32),
                              d.probs, (d.landmarks * s + np.array([x0, y0], np.float32)).astype(np.float32)))
    return out


def second_look(frames: np.ndarray, dets: Sequence[Detections], track: Track, detector: FaceDetector,
                normalised: bool = True) -> Looked:
    """The track with its gap frames filled where a second look confirms the subject.

    frames (T, H, W, 3) uint8 at full resolution (as given to ``detector.detect``); dets and track from the
    first search (``select_subject``). Frames found here get ``chosen == SECOND_LOOK`` and the region's O-Net
    probability; the whole track is smoothed again as ``select_subject`` would have, had it found them.
    """
    start = time.perf_counter()
    cfg = detector.cfg
    n = len(track)
    looked: list[int] = []
    found: list[int] = []
    raw = np.full((n, 4), np.nan, np.float32)
    for t in np.flatnonzero(track.chosen >= 0):        # -2 (an earlier second look) has no detection index
        raw[t] = dets[t].boxes[track.chosen[t]]

    def done(result: Track) -> Looked:
        extra = np.where(np.isin(np.arange(n), found)[:, None], raw, np.nan).astype(np.float32)
        return Looked(result, extra, tuple(looked), tuple(found), time.perf_counter() - start)

    if not track.found.any() or track.found.all():
        return done(track)
    accept = cfg.second_look_accept
    if track.probs.max() < _ANCHOR_PROB:        # a subject only ever seen unconfidently: confirm it first
        t = int(np.argmax(track.probs))
        looked.append(t)
        d = look(frames, [(t, raw[t], cfg.second_look_region)], detector, _ANCHOR_PROB, normalised)[0]
        if not (consistent(raw[t], d.boxes, cfg) & (d.probs >= _ANCHOR_PROB)).any():
            return done(track)
    probs, chosen, anchors = track.probs.copy(), track.chosen.copy(), track.found.copy()
    tried: dict[int, tuple[int, int]] = {}
    for _ in range(_ROUNDS):
        jobs = []
        for t in np.flatnonzero(~anchors):
            pred, pair, both = predict_box(raw, anchors, int(t))
            if tried.get(int(t)) == pair:
                continue                        # the same anchors as last time: the same answer
            tried[int(t)] = pair
            jobs.append((int(t), pred, cfg.second_look_region * (1.0 if both else _ONE_SIDED)))
        if not jobs:
            break
        looked += [j[0] for j in jobs]
        new = False
        for (t, pred, _), d in zip(jobs, look(frames, jobs, detector, accept, normalised)):
            ok = np.flatnonzero(consistent(pred, d.boxes, cfg) & (d.probs >= accept))
            if not len(ok):
                continue
            i = ok[_match(pred, d.boxes[ok], cfg)]      # every consistent box passes one of its rules
            raw[t], probs[t], chosen[t] = d.boxes[i], d.probs[i], SECOND_LOOK
            anchors[t] = new = True
            found.append(t)
        if not new:
            break
    if not found:
        return done(track)
    boxes = smooth_boxes(raw, anchors, cfg.smooth)
    boxes[anchors] = _clamp_centre(boxes[anchors], *frames.shape[1:3])
    return done(Track(boxes.astype(np.float32), probs.astype(np.float32), anchors, chosen, track.seed))
