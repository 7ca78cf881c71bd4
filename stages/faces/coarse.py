"""The coarse-first face search (``FaceConfig.coarse_min_face`` > 0): the whole search's boxes for a video's
subject at a fraction of its cost.

Whole frames are searched only at the pyramid levels of faces at least ``coarse_min_face`` big; the smaller
levels only around the faces that could be the subject and where the subject is missing. Every P-Net window
used is one of the whole search's, with the same score, and goes through the same NMS, R-Net and O-Net, so
the subject's boxes are the whole search's, not re-estimates. At 79 px, 16 frames, one thread, interleaved
with the whole search (bench/faces_coarse.py, subject rule 'track'): 3.5-5.2x less CPU time at 1080p/720p
with one face, 2.3-2.5x on the portrait DFDC clips, 1.5x on the street clip (many small faces), 2.8-4.4x at
480p/512 px, 1.5-1.8x at 256 px; the same subject frames and IoU 1.0 on all 21 dev clips and the sample clips
(tests/test_faces_coarse.py). Exactness matters: on the street clip two faces are 57 and 55 px, so a
re-estimated box can switch who the subject is.
"""
from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from stages.faces import boxes as bx
from stages.faces.config import Detections, FaceConfig
from stages.faces.detector import FaceDetector, StageClock, level_rows, split_detections
from stages.faces.nets import MEAN, SCALE
from stages.faces.track import Track, _area, reference_boxes, select_subject, subject_seed

_KEEP_TABLE = 160 << 20     # largest summed-area table storage a detector keeps between calls (coarse_min_face)
# Coarse-first search (FaceConfig.coarse_min_face), measured on the 21 dev clips with its smallest window at 56
# and at 79 px: it found every confident face of the whole search of at least 56 px but 2 of 458 (both of
# probability < 0.95); its face sides were 0.84-1.34x the whole search's (~1,000 faces).
_SEED_MARGIN = 1.3          # whole frames are searched down to windows <= the subject's side / this
_RIVAL = 0.8                # faces searched around: coarse side >= this x the subject's (0.8 < 0.84)


class CoarseSearch:
    """``CoarseSearch(detector).detect(frames)``: one video's frames -> Detections, with the detector's nets."""

    def __init__(self, det: FaceDetector):
        self.det = det
        self.kept = threading.local()       # summed-area table storage reused between calls (per thread)

    def region_pnet(self, table: torch.Tensor, scales: list[float], cores: torch.Tensor, frame: torch.Tensor,
                     smallest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P-Net on the parts of the pyramid levels at ``scales`` where a window can overlap one of ``cores``,
        as ``_pnet_levels``: the same windows with the same scores as the whole level.

        cores (k, 4) x1, y1, x2, y2 in detection pixels; frame (k,) the frame (row of ``table``) of each;
        smallest (k,) the smallest window (detection pixels) searched around each. At each level the core
        grown by one window on every side is cut from the level (``bx.level_windows``: the level's own
        numbers) starting on an even level pixel, so that P-Net's stride-2 grid is the whole level's; outputs
        whose window runs past the cut are dropped. Cores of one frame may overlap: the NMS within each level
        removes the duplicates (the same window with the same score). Windows that do not overlap a core may
        be returned too.
        """
        h, w = table.shape[1] - 1, table.shape[2] - 1
        found = []
        for scale in scales:
            lh, lw = bx.level_size(h, w, scale)
            cell = 12.0 / scale
            lo = ((cores[:, :2] - cell) * scale).floor().long().clamp(min=0).flip(1)      # (k, 2) row, col
            lo -= lo % 2                                   # P-Net's stride-2 grid: an even first pixel
            hi = torch.minimum(((cores[:, 2:] + cell) * scale).ceil().long().flip(1),
                               torch.tensor([lh, lw], device=cores.device))
            size = hi - lo
            use = (size.min(dim=1).values >= 12) & (smallest <= cell * (1 + 1e-6))
            if not use.any():
                continue
            idx = use.nonzero()[:, 0]
            idx = idx[torch.argsort(size[idx].prod(dim=1), descending=True, stable=True)]
            bins = bx.level_bins(table, (lh, lw))
            full = torch.tensor([lh, lw], device=cores.device)
            parts, start = [], 0
            while start < len(idx):         # chunks of regions, largest first, each cut at the chunk's size
                sh, sw = size[idx[start]].tolist()
                step = self.det._per_call(len(idx) - start, 10 * 4 * sh * sw)
                part = idx[start:start + step]
                cut = size[part].max(dim=0).values
                cut += (full - cut) % 2                    # the level's far edge stays on the even grid
                origin = torch.minimum(lo[part], full - cut)
                level = bx.level_windows(table, bins, frame[part], origin, tuple(cut.tolist()))
                reg, prob = self.det.pnet(level.sub_(MEAN).mul_(SCALE))
                # outputs whose 12 px window runs past the cut are not the level's, unless the cut ends
                # where the level does (there the level's own last outputs are partial the same way)
                valid = torch.where(origin + cut == full, cut, (cut - 10) // 2)   # (c, 2) rows, cols kept
                rows_ok = torch.arange(prob.shape[1], device=prob.device)[None, :] < valid[:, :1]
                cols_ok = torch.arange(prob.shape[2], device=prob.device)[None, :] < valid[:, 1:]
                prob = prob * (rows_ok[:, :, None] & cols_ok[:, None, :])
                cand, which = bx.pnet_candidates(reg, prob, scale, self.det.cfg.thresholds[0],
                                                 origin=origin.flip(1) // 2)
                parts.append((cand, frame[part][which]))
                start += step
            cand, where = torch.cat([c for c, _ in parts]), torch.cat([f for _, f in parts])
            keep = bx.nms(cand, where, 0.5)
            found.append((cand[keep], where[keep], scale))
        return level_rows(found, self.det.device)

    def _integral_image(self, images: torch.Tensor) -> torch.Tensor:
        """``bx.integral_image`` into storage kept between calls (per thread, up to _KEEP_TABLE bytes): the
        first touch of a fresh 100 MB table (16 frames at 960x540) cost as much as filling it here."""
        bsz, h, w, c = images.shape
        dtype = torch.int32 if 255 * h * w < 2 ** 31 else torch.int64
        need = bsz * (h + 1) * (w + 1) * c
        buf = getattr(self.kept, "table", None)
        if buf is None or buf.numel() < need or buf.dtype != dtype or buf.device != images.device:
            buf = torch.empty(need, dtype=dtype, device=images.device)
            if need * buf.element_size() <= _KEEP_TABLE:
                self.kept.table = buf
        table = buf[:need].view(bsz, h + 1, w + 1, c)
        table[:, 0] = 0
        table[:, :, 0] = 0
        return bx.fill_integral_image(table, images)

    def detect(self, frames: torch.Tensor, profile: dict | None) -> list[Detections]:
        """The whole search's boxes for the subject at a fraction of its cost (``coarse_min_face`` > 0).

        1. Coarse search: P-Net over whole frames on the pyramid levels whose window is at least
           ``coarse_min_face`` (the same levels, pixels and scores as the whole search), then R-Net and O-Net
           on its likelier candidates (``coarse_threshold``) with a strict NMS (``coarse_nms``): where the
           faces are, roughly. While the subject (the face it is followed from, ``_subject_side``: the exact
           boxes' subject once there are some, else the coarse faces') is less than _SEED_MARGIN x the coarse
           search's smallest window, a larger face could have been missed: the coarse search takes the next
           smaller level too.
        2. Around each face found that could be the subject (at least _RIVAL x its size), the candidates
           whose window overlaps it: those of the coarse levels, and those of the smaller levels down to
           ``region_band`` x its size, searched only where they can overlap it (``region_pnet``). They go
           through the whole search's NMS, R-Net and O-Net, so a face's box is the one the whole search gives
           (IoU 1.0 on every dev clip), not a re-estimate.
        3. The subject is tracked (``select_subject``). Where it is missing, the faces overlapping the boxes
           the tracker compared that frame with (``reference_boxes``: the track's last two) are searched down
           to ``min_face`` (they are the only ones it could take there). 1 to 3 are repeated until nothing
           changes; the subject found may change between rounds (a smaller face seen in more frames), and
           with it the faces searched around.
        Other faces are reported only where they were searched around.
        """
        cfg = self.det.cfg
        clock = StageClock(profile, self.det.device)
        n, height, width = frames.shape[:3]
        images = self.det.to_detection_scale(frames)
        h, w = images.shape[1:3]
        table = self._integral_image(images)
        clock.lap("scale")
        groups = self._frame_groups(list(range(n)))
        scales = bx.pyramid_scales(h, w, cfg.min_face, cfg.scale_factor)
        k = sum(12.0 / s < cfg.coarse_min_face * (1 - 1e-6) for s in scales)
        fine, levels = scales[:k], scales[k:]          # fine: the levels searched only around faces
        wide = level_rows([], self.det.device)             # whole-frame P-Net candidates, frames, window sides
        faces: list = []                                # what the coarse search found: (frame, box, prob)
        # targets[t]: (x1, y1, x2, y2, smallest window, core growth) per face searched around, in detection
        # pixels (see _search_targets); None: the whole frame
        targets: list[list | None] = [[] for _ in range(n)]
        dets = [Detections.empty()] * n
        track = None
        for _ in range(4 * len(scales) + 8):          # rounds: two to four are the rule
            if levels:                                  # (more of) the coarse search
                found = self._map(lambda g: self._coarse(table, levels, g, profile), groups)
                wide = tuple(torch.cat(x) for x in zip(wide, *(f[:3] for f in found)))
                faces += [face for f in found for face in f[3]]
                levels = []
            # the subject's side: its seed's in the exact boxes so far, else in the coarse search's rough ones
            seed = _subject_side(dets, track, cfg) or _subject_side(_as_detections(faces, n), None, cfg)
            smallest = min((12.0 / s for s in scales if s not in fine), default=0.0)
            if fine and seed < _SEED_MARGIN * smallest:
                levels = [fine.pop()]                   # the next smaller level on whole frames too
                clock.count("coarse_levels_added", 1)
                continue
            if not seed and track is not None and not any(x is None for x in targets):
                targets = [None] * n                    # no confident face anywhere: the whole search
                self._search(table, fine, wide, targets, list(range(n)), dets, profile)
                clock.count("whole_frames", n)
                break
            todo = set()
            for t, box, _ in faces:                     # faces that could be the subject
                side = max(box[2] - box[0], box[3] - box[1])
                if targets[t] is None:
                    continue
                if side >= _RIVAL * seed and not any(_iou(box, x[:4]) > 0.5 for x in targets[t]):
                    targets[t].append((*box, cfg.region_band * side, 0.0))
                    todo.add(t)
            if track is not None and track.found.any():   # where the subject is missing: what it could match
                expected = reference_boxes(dets, track, cfg)           # (T, 2, 4): the boxes it was compared with
                for t, k in zip(*np.nonzero(~track.found[:, None] & ~np.isnan(expected[..., 0]))):
                    target = (*expected[t, k].tolist(), cfg.min_face, 0.5)
                    if targets[t] is not None and target not in targets[t]:
                        targets[t].append(target)
                        todo.add(int(t))
                        clock.count("track_regions", 1)
            if not todo and track is not None:
                break
            if todo:
                self._search(table, fine, wide, targets, sorted(todo), dets, profile)
            track = select_subject(dets, (h, w), cfg)
        sy, sx = height / h, width / w
        scale = np.array([sx, sy, sx, sy], np.float32)
        return [Detections(d.boxes * scale, d.probs, d.landmarks * scale[:2]) for d in dets]

    @torch.inference_mode()     # thread-local: worker threads need it too
    def _coarse(self, table: torch.Tensor, levels: list[float], frames: list[int], profile: dict | None):
        """Coarse search of consecutive ``frames`` at ``levels``: the P-Net candidates for later searches
        (candidates (n, 9), frame (n,), window side (n,)) and where the faces are [(frame, box, prob)]."""
        clock = StageClock(profile, self.det.device)
        cand, frame, cell = self.det._pnet_levels(table[frames[0]:frames[-1] + 1], levels)
        frame = frame + frames[0]
        clock.lap("coarse_pnet", len(cand))
        likely = cand[:, 4] >= self.det.cfg.coarse_threshold
        rows, where = self.det._merge_levels(cand[likely], frame[likely], self.det.cfg.coarse_nms)
        rows, _, where = self.det._cascade(table, rows, where, clock, "coarse_", self.det.cfg.coarse_nms)
        return cand, frame, cell, list(zip(where.tolist(), rows[:, :4].tolist(), rows[:, 4].tolist()))

    def _search(self, table, fine, wide, targets, frames, dets, profile) -> None:
        """``_search_targets`` on frame groups (worker threads on the CPU); fills ``dets``."""
        run = functools.partial(self._search_targets, table, fine, wide, targets, profile=profile)
        for part in self._map(lambda g: list(zip(g, run(g))), self._frame_groups(frames)):
            for t, d in part:
                dets[t] = d

    def _frame_groups(self, frames: list[int]) -> list[list[int]]:
        """Consecutive frames split into one group per worker thread (one group on a device)."""
        parts = 1 if self.det.device.type != "cpu" else min(torch.get_num_threads(), len(frames))
        return [g.tolist() for g in np.array_split(np.asarray(frames, dtype=np.int64), max(parts, 1)) if len(g)]

    def _map(self, fn, groups: list) -> list:
        """fn over groups: on worker threads with one torch thread each when there are several (see detect)."""
        if len(groups) <= 1:
            return [fn(g) for g in groups]
        with ThreadPoolExecutor(len(groups), initializer=torch.set_num_threads, initargs=(1,)) as pool:
            return list(pool.map(fn, groups))

    @torch.inference_mode()     # thread-local: worker threads need it too
    def _search_targets(self, table: torch.Tensor, fine: list[float], wide: tuple, targets: list,
                        frames: list[int], profile: dict | None) -> list[Detections]:
        """The cascade on ``frames`` restricted to their targets -> their Detections (detection pixels).

        A target (x1, y1, x2, y2, smallest, grow) keeps the P-Net windows of at least ``smallest`` pixels that
        overlap its core, the box grown by ``grow`` x its side: those of the coarse search's levels (``wide``,
        already computed on whole frames) and those of the small levels (``fine``), searched here only where
        they can overlap the core. These candidates then go through the usual NMS, R-Net and O-Net. A target
        None is the whole frame: every candidate, i.e. the whole search.
        """
        clock = StageClock(profile, self.det.device)
        h, w = table.shape[1] - 1, table.shape[2] - 1
        spec = []                                    # (frame, core x1, y1, x2, y2, smallest)
        for t in frames:
            if targets[t] is None:
                spec.append((t, -1.0, -1.0, w + 1.0, h + 1.0, 0.0))
                continue
            for x1, y1, x2, y2, smallest, grow in targets[t]:
                g = grow * max(x2 - x1, y2 - y1)
                spec.append((t, x1 - g, y1 - g, x2 + g, y2 + g, smallest))
        spec = torch.tensor(spec, dtype=torch.float64, device=self.det.device)
        where, core, smallest = spec[:, 0].long(), spec[:, 1:5], spec[:, 5]
        cand, frame, cell = self.region_pnet(table, fine, core.float(), where, smallest.float())
        mine = torch.isin(wide[1], where)                # the coarse search's candidates in these frames
        cand, frame, cell = (torch.cat([cand, wide[0][mine]]), torch.cat([frame, wide[1][mine]]),
                             torch.cat([cell, wide[2][mine]]))
        # keep the windows that overlap a core of their frame and are not smaller than its smallest
        box = cand[:, :4].double()
        lt = torch.maximum(box[:, None, :2], core[None, :, :2])
        rb = torch.minimum(box[:, None, 2:], core[None, :, 2:])
        keep = (((rb - lt).clamp(min=0).prod(dim=2) > 0) & (frame[:, None] == where[None, :])
                & (cell[:, None].double() >= smallest[None, :] * (1 - 1e-6))).any(dim=1)
        cand, frame = cand[keep], frame[keep]
        clock.lap("region_pnet", len(cand))
        if len(cand):
            rows, frame = self.det._merge_levels(cand, frame)
            rows, points, frame = self.det._cascade(table, rows, frame, clock, "region_")
        else:
            rows, points = torch.zeros(0, 5, device=self.det.device), torch.zeros(0, 5, 2, device=self.det.device)
        dets = split_detections(rows, points, frame, len(table), (1.0, 1.0))
        return [dets[t] for t in frames]


def _iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes given as sequences."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def _subject_side(dets: list[Detections], track: Track | None, cfg: FaceConfig) -> float:
    """Side (square root of the area) of the face the subject of ``dets`` is followed from (``track.seed``,
    or ``subject_seed(dets)`` when ``track`` is None), if it is confident; 0 otherwise (no confident face
    anywhere). Under ``subject='largest'`` it is the largest confident face; under ``'track'`` the seed of the
    best track, which can be smaller than a face seen in fewer frames."""
    seed = subject_seed(dets, cfg) if track is None else \
        (track.seed, int(track.chosen[track.seed])) if track.seed >= 0 else None
    if seed is None:
        return 0.0
    d = dets[seed[0]]
    return float(np.sqrt(_area(d.boxes[seed[1]]))) if d.probs[seed[1]] >= cfg.min_prob else 0.0


def _as_detections(faces: list, n: int) -> list[Detections]:
    """The coarse search's faces [(frame, box, prob)] as Detections of n frames (no landmarks: never read)."""
    boxes: list[list] = [[] for _ in range(n)]
    probs: list[list] = [[] for _ in range(n)]
    for t, box, prob in faces:
        boxes[t].append(box)
        probs[t].append(prob)
    return [Detections(np.array(b, np.float32).reshape(-1, 4), np.array(p, np.float32),
                       np.zeros((len(p), 5, 2), np.float32)) for b, p in zip(boxes, probs)]
