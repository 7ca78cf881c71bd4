"""Batched MTCNN face detection: many frames per call, CPU or CUDA, the same cascade code on both.

Cascade (Zhang et al. 2016, https://arxiv.org/abs/1604.02878): an image pyramid scanned by P-Net for
proposals, R-Net to refine them on 24x24 crops, O-Net for the final boxes, probabilities and 5 landmarks on
48x48 crops. Box conventions follow facenet-pytorch, the reference implementation the tests compare against.

Where the time goes and what was done about it (16 frames at 960x540, one thread, bench/faces.py):
- P-Net over the pyramid is about 55% of the work, R-Net on ~3,600 candidates 25%, O-Net 15%.
- Every frame's summed-area table (exact integers) is built once. Pyramid levels are cut from it with four
  index selections: the same pixels as the reference's ``interpolate(mode="area")``, ~4x cheaper. (Bilinear
  resizing was cheaper still but moved boxes to IoU 0.82 and changed face counts: not offered.) R-Net and
  O-Net crops of all candidates are one gather from the same table: the reference's area-averaged pixels
  without its Python loop over boxes.
- ``FaceConfig.coarse_min_face`` (on by default at 79 px; 0 turns it off): whole frames are searched only at the pyramid levels of
  faces at least that big, the smaller levels only around the faces that could be the subject and where the
  subject is missing (``stages.faces.coarse.CoarseSearch.detect``). Every P-Net window it uses is one of the whole search's, with
  the same score, and goes through the same NMS, R-Net and O-Net, so the subject's boxes are the whole
  search's. At 79 px, 16 frames, one thread, interleaved with the whole search (bench/faces_coarse.py): 3.5-5.4x
  less CPU time at 1080p/720p with one face, 2.7x on the portrait DFDC clip (small face), 1.9x on the street
  clip (many small faces), 3-4x at 480p/512 px, 1.5-2x at 256 px; the same subject frames and IoU 1.0 on all
  21 dev clips and the sample clips (tests/test_faces_coarse.py).
- On a GPU each stage runs over all frames of a group (up to ~100 MB of tables) in one call. On the CPU the
  small-channel convolutions are memory bound, so each call gets only as many frames or crops as keep its
  largest layer output in cache (``chunk_mb``, 2-4x faster than one big batch), the convolutional trunks run
  on oneDNN blocked tensors (``cpu_engine``, 8-22% faster than channels_last), and frame groups run on
  worker threads with one torch thread each (robust when other jobs share the cores).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.errors import PipelineError
from stages.faces import boxes as bx
from stages.faces.config import Detections, FaceConfig
from stages.faces.nets import MEAN, SCALE, MkldnnNet, load_net, weights_sha256

log = logging.getLogger(__name__)
_GROUP_PIXELS = 8 << 20     # frames per cascade pass: bounds the summed-area table to ~100 MB


class FaceError(PipelineError):
    """Frames the detector cannot take (wrong shape or type)."""


def _cache_bytes() -> int:
    """Largest CPU cache of this machine from sysfs (the net chunks are sized from it); 8 MB if unknown."""
    best = 0
    for index in range(8):
        try:
            with open(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
        best = max(best, int(text.rstrip("KM")) * mult)
    return best or 8 << 20


@functools.lru_cache(maxsize=4)
def _nets(device: str, engine: str) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """P/R/O-Net on ``device``, loaded once per process: channels_last, or on oneDNN blocked tensors."""
    nets = [load_net(n).to(device).to(memory_format=torch.channels_last) for n in ("pnet", "rnet", "onet")]
    return tuple(MkldnnNet(n) for n in nets) if engine == "mkldnn" else tuple(nets)


def _speed_choices(cfg: FaceConfig, device: torch.device) -> tuple[str, int | None, str]:
    """(engine, bytes per net call or None for all at once, why) for this machine; describe() records them."""
    if device.type != "cpu":
        return "eager", None, "device: everything in one call per stage"
    engine = cfg.cpu_engine
    if engine == "auto":
        engine = "mkldnn" if torch.backends.mkldnn.is_available() else "eager"
    if engine == "mkldnn" and not torch.backends.mkldnn.is_available():
        raise FaceError("cpu_engine mkldnn: this torch build has no oneDNN; use --cpu-engine eager")
    if cfg.chunk_mb:
        return engine, int(cfg.chunk_mb * (1 << 20)), "chunk_mb option"
    # Each net call's largest layer output is kept near an eighth of the last-level cache (4 MB of 32 MB
    # here): R-Net in chunks of 64 crops ran 2.7x faster than all 3,600 at once, O-Net in chunks of 8-16
    # crops 3x faster than 300, P-Net one or two 540p frames per call 2-3x faster than 16; 2 to 16 MB were
    # equally good, 64 MB was 1.5x slower (single thread, CPU time, interleaved runs).
    return engine, max(2 << 20, _cache_bytes() // 8), "auto: last-level cache / 8 (sysfs)"


class FaceDetector:
    """``FaceDetector(cfg, device).detect(frames)``: frames (B, H, W, 3) uint8 -> list of B Detections."""

    def __init__(self, cfg: FaceConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg or FaceConfig()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise FaceError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        self.engine, self.chunk_bytes, self.chunk_source = _speed_choices(self.cfg, self.device)
        self.pnet, self.rnet, self.onet = _nets(str(self.device), self.engine)
        self._coarse = None                 # the coarse-first search, made on first use
        log.debug("face detector on %s, engine %s, chunk %s bytes (%s)", self.device, self.engine,
                  self.chunk_bytes, self.chunk_source)

    def describe(self) -> dict:
        """Everything that decides the boxes or the speed, for provenance (the store saves it)."""
        return {"detector": "mtcnn", "implementation": "stages.faces (PyTorch cascade)",
                "weights": "mtcnn package (pnet/rnet/onet.lz4)", "weights_sha256": weights_sha256(),
                "config": {k: list(v) if isinstance(v, tuple) else v
                           for k, v in dataclasses.asdict(self.cfg).items()},
                "device": str(self.device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                "cpu_parallelism": "frame groups on torch.get_num_threads() workers, 1 torch thread each"
                if self.device.type == "cpu" else "device",
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "engine": self.engine, "chunk_bytes": self.chunk_bytes, "chunk_source": self.chunk_source,
                "memory_format": "oneDNN blocked" if self.engine == "mkldnn" else "channels_last"}

    # ---- input ---------------------------------------------------------------------------------------
    def _as_tensor(self, frames) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor):
            with warnings.catch_warnings():     # read-only arrays (decoded frames) are only ever read here
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                frames = torch.as_tensor(np.asarray(frames))
        t = frames
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[-1] not in (1, 3):
            raise FaceError(f"frames must be (B, H, W, 3) uint8 RGB, got shape {tuple(t.shape)}")
        if t.dtype != torch.uint8:
            raise FaceError(f"frames must be uint8 RGB (0-255), got {t.dtype}")
        if t.shape[-1] == 1:
            t = t.expand(*t.shape[:3], 3)
        return t

    def detection_size(self, h: int, w: int) -> tuple[int, int]:
        """Size (h, w) at which a frame of h x w is searched."""
        s = self.cfg.detect_scale
        if self.cfg.max_side and max(h, w) * s > self.cfg.max_side:
            s = self.cfg.max_side / max(h, w)
        return (max(1, round(h * s)), max(1, round(w * s))) if s < 1 else (h, w)

    def to_detection_scale(self, frames) -> torch.Tensor:
        """(B, H, W, 3) uint8 on any device -> (B, h, w, 3) uint8 on self.device: antialiased bilinear.

        The result is an ordinary uint8 image: ``detect(frames)`` finds the same faces as
        ``detect(to_detection_scale(frames))`` (boxes scaled), and crops can be summed exactly in integers.
        On the CPU torch resizes uint8 channels_last images directly (16 1080p frames in 0.02 s, 20x faster
        than float area resizing); that uint8 fast path is CPU-only, so on a GPU the same filter runs in
        float and is rounded.
        """
        frames = self._as_tensor(frames)
        h, w = self.detection_size(*frames.shape[1:3])
        if (h, w) == tuple(frames.shape[1:3]):
            return frames.to(self.device)
        out = torch.empty(len(frames), h, w, 3, dtype=torch.uint8, device=self.device)
        for i in range(0, len(frames), 8):        # bounded memory for long 4K batches
            x = frames[i:i + 8].to(self.device).permute(0, 3, 1, 2)             # (c, 3, H, W) channels_last
            if self.device.type != "cpu":
                x = x.float()
            y = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
            if y.dtype != torch.uint8:
                y = y.round_().clamp_(0, 255).to(torch.uint8)
            out[i:i + 8] = y.permute(0, 2, 3, 1)
        return out

    # ---- stages --------------------------------------------------------------------------------------
    def _per_call(self, n: int, item_bytes: int) -> int:
        """How many items (frames or crops) to push through a net at once: all of them on a GPU; on the CPU
        as many as keep the largest layer output within the cache budget (memory-bound small convolutions
        ran 2-4x faster that way here than in one big batch; bench/faces.py)."""
        if self.chunk_bytes is None:
            return max(n, 1)
        return int(max(1, min(n, self.chunk_bytes // item_bytes)))

    def _proposals(self, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """P-Net over the pyramid. table (B, h+1, w+1, 3), the frames' summed-area table (the pyramid levels
        are cut from it, and R-Net and O-Net crop from it later) -> rows (n, 5) x1,y1,x2,y2,score; frame (n,).
        """
        h, w = table.shape[1] - 1, table.shape[2] - 1
        cand, frame, _ = self._pnet_levels(table, bx.pyramid_scales(h, w, self.cfg.min_face,
                                                                    self.cfg.scale_factor))
        return self._merge_levels(cand, frame)

    def _pnet_levels(self, table: torch.Tensor, scales: list[float]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P-Net over whole frames at ``scales``, NMS within each level -> candidates (n, 9) (see
        ``bx.pnet_candidates``), frame (n,), and the side of each one's window, 12 / scale (n,)."""
        n, h, w = table.shape[0], table.shape[1] - 1, table.shape[2] - 1
        found = []
        for scale in scales:
            size = bx.level_size(h, w, scale)
            step = self._per_call(n, 10 * 4 * size[0] * size[1])     # frames per P-Net call (cache blocking)
            for i in range(0, n, step):
                level = bx.area_level(table[i:i + step], size)           # (b, 3, lh, lw) channels_last
                reg, prob = self.pnet(level.sub_(MEAN).mul_(SCALE))
                cand, frame = bx.pnet_candidates(reg, prob, scale, self.cfg.thresholds[0])
                keep = bx.nms(cand, frame, 0.5)
                found.append((cand[keep], frame[keep] + i, scale))
        return level_rows(found, self.device)

    def _merge_levels(self, cand: torch.Tensor, frame: torch.Tensor, nms: float = 0.7
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """All levels' P-Net candidates (n, 9) -> NMS over the levels, moved by their offsets, squared."""
        keep = bx.nms(cand, frame, nms)
        cand, frame = cand[keep], frame[keep]
        moved = bx.apply_offsets(cand[:, :4], cand[:, 5:9], plus_one=False)
        return torch.cat([bx.square(moved), cand[:, 4:5]], dim=1), frame

    def _score(self, net: torch.nn.Module, table: torch.Tensor, rows: torch.Tensor, frame: torch.Tensor,
               size: int, item_bytes: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
        """Crop every non-empty window to size x size and run ``net`` on the crops, chunk by chunk.

        Returns the net's outputs (concatenated; None when no window is left), and the rows and frames of
        the windows that were scored.
        """
        windows = bx.crop_windows(rows[:, :4], table.shape[1] - 1, table.shape[2] - 1)
        ok = (windows[:, 1] > windows[:, 0]) & (windows[:, 3] > windows[:, 2])
        windows, rows, frame = windows[ok], rows[ok], frame[ok]
        if not len(rows):                       # every window fell outside the frame
            return None, rows, frame
        step = self._per_call(len(rows), item_bytes)
        outs = []
        for i in range(0, len(rows), step):     # cache blocking: a handful of chunks, not a loop per box
            crops = bx.area_crops(table, frame[i:i + step], windows[i:i + step], size)   # (c, 3, s, s)
            outs.append(net((crops - MEAN) * SCALE))
        return tuple(torch.cat(o) for o in zip(*outs)), rows, frame

    def _refine(self, table, rows, frame, nms=0.7):
        """R-Net on 24x24 crops: keep, rescore, NMS, move and square the boxes."""
        out, rows, frame = self._score(self.rnet, table, rows, frame, 24, 28 * 22 * 22 * 4)
        if out is None:
            return rows[:, :5], frame
        offsets, prob = out
        ok = prob > self.cfg.thresholds[1]
        rows = torch.cat([rows[ok, :4], prob[ok, None]], dim=1)
        frame, offsets = frame[ok], offsets[ok]
        keep = bx.nms(rows, frame, nms)
        rows, frame, offsets = rows[keep], frame[keep], offsets[keep]
        return torch.cat([bx.square(bx.apply_offsets(rows[:, :4], offsets)), rows[:, 4:5]], dim=1), frame

    def _output(self, table, rows, frame):
        """O-Net on 48x48 crops -> final boxes (n, 5), landmarks (n, 5, 2), frame (n,)."""
        out, rows, frame = self._score(self.onet, table, rows, frame, 48, 32 * 46 * 46 * 4)
        if out is None:
            return rows[:, :5], torch.zeros(0, 5, 2, device=self.device), frame
        offsets, marks, prob = out
        ok = prob > self.cfg.thresholds[2]
        rows, frame, offsets, marks = rows[ok], frame[ok], offsets[ok], marks[ok]
        w = (rows[:, 2] - rows[:, 0] + 1)[:, None]
        h = (rows[:, 3] - rows[:, 1] + 1)[:, None]
        points = torch.stack([w * marks[:, :5] + rows[:, 0:1] - 1, h * marks[:, 5:] + rows[:, 1:2] - 1], dim=2)
        rows = torch.cat([bx.apply_offsets(rows[:, :4], offsets), prob[ok, None]], dim=1)
        keep = bx.nms_min(rows, frame, 0.7)
        return rows[keep], points[keep], frame[keep]

    # ---- public --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def detect(self, frames, profile: dict | None = None) -> list[Detections]:
        """frames (B, H, W, 3) uint8 RGB, numpy or torch, any device -> B Detections in input pixels.

        With ``cfg.coarse_min_face`` the frames are one video's: see ``stages.faces.coarse.CoarseSearch``.

        ``profile``: a dict to which seconds per stage (scale, pnet, rnet, onet) and candidate counts are
        added (the benchmark uses it; CUDA is synchronised at each stage boundary only then).
        """
        frames = self._as_tensor(frames)
        n, height, width = frames.shape[:3]
        if n == 0:
            return []
        h, w = self.detection_size(height, width)
        if self.cfg.coarse_min_face > self.cfg.min_face:
            if self._coarse is None:
                from stages.faces.coarse import CoarseSearch
                self._coarse = CoarseSearch(self)
            return self._coarse.detect(frames, profile)
        if self.chunk_bytes is None:          # device: as many frames per pass as ~100 MB of tables allow
            group = max(1, _GROUP_PIXELS // (h * w))
        else:                                 # CPU: as many as keep P-Net's first layer output in cache
            lh, lw = bx.level_size(h, w, 12.0 / self.cfg.min_face)
            group = self._per_call(n, 10 * 4 * lh * lw)
        groups = [frames[i:i + group] for i in range(0, n, group)]
        run = functools.partial(self._detect_group, ratio=(height / h, width / w), profile=profile)
        threads = torch.get_num_threads()
        if self.device.type != "cpu" or threads == 1:
            return [d for g in groups for d in run(g)]
        # CPU: frame groups on worker threads with one torch thread each (thread-local: the caller's count
        # is kept). Intra-op threads meet at a barrier after every small op; when other jobs share the cores
        # one descheduled thread stalls the rest, and 2 intra-op threads ran 7x slower than 1 here under
        # such load. Independent frame groups have no barrier.
        with ThreadPoolExecutor(min(len(groups), threads), initializer=torch.set_num_threads,
                                initargs=(1,)) as pool:
            return [d for part in pool.map(run, groups) for d in part]

    @torch.inference_mode()     # thread-local: worker threads need it too
    def _detect_group(self, frames: torch.Tensor, ratio: tuple[float, float], profile: dict | None
                      ) -> list[Detections]:
        clock = StageClock(profile, self.device)
        images = self.to_detection_scale(frames)                      # (B, h, w, 3) uint8 on device
        clock.lap("scale")
        table = bx.integral_image(images)
        rows, frame = self._proposals(table)
        clock.lap("pnet", len(rows))
        return split_detections(*self._cascade(table, rows, frame, clock), len(images), ratio)

    def _cascade(self, table: torch.Tensor, rows: torch.Tensor, frame: torch.Tensor, clock: "StageClock",
                 stage: str = "", nms: float = 0.7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P-Net's squared candidates (n, 5) -> R-Net -> O-Net: rows (m, 5), landmarks (m, 5, 2), frame (m,).
        ``nms``: the IoU at which R-Net's boxes are merged (0.7 as the reference)."""
        points = torch.zeros(0, 5, 2, device=self.device)
        if len(rows):
            rows, frame = self._refine(table, rows, frame, nms)
            clock.lap(stage + "rnet", len(rows))
            if len(rows):
                rows, points, frame = self._output(table, rows, frame)
                clock.lap(stage + "onet", len(rows))
        return rows, points, frame



def level_rows(found: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[(candidates (n, 9), frame (n,), scale)] per level -> all candidates, frames, window sides."""
    if not found:                                                    # frame smaller than a 12 px window
        return (torch.zeros(0, 9, device=device), torch.zeros(0, dtype=torch.long, device=device),
                torch.zeros(0, device=device))
    return (torch.cat([c for c, _, _ in found]), torch.cat([f for _, f, _ in found]),
            torch.cat([torch.full((len(c),), 12.0 / s, device=device) for c, _, s in found]))


class StageClock:
    """Adds seconds per stage (and how many candidates left it) to ``profile`` when one is given.

    With parallel frame groups the seconds add up over workers (CPU seconds per stage, not wall time).
    """

    _lock = threading.Lock()

    def __init__(self, profile: dict | None, device: torch.device) -> None:
        self.profile, self.device = profile, device
        self.last = time.perf_counter()

    def count(self, name: str, count: int) -> None:
        if self.profile is not None and count:
            with self._lock:
                self.profile[name] = self.profile.get(name, 0) + count

    def lap(self, stage: str, count: int | None = None) -> None:
        if self.profile is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        with self._lock:
            self.profile[f"{stage}_s"] = self.profile.get(f"{stage}_s", 0.0) + now - self.last
            if count is not None:
                self.profile[f"{stage}_out"] = self.profile.get(f"{stage}_out", 0) + count
        self.last = now


def split_detections(rows: torch.Tensor, points: torch.Tensor, frame: torch.Tensor, n: int,
           ratio: tuple[float, float]) -> list[Detections]:
    """Per-frame Detections, best first, mapped from the detection scale back to input pixels."""
    sy, sx = ratio
    rows, points, frame = rows.float().cpu().numpy(), points.float().cpu().numpy(), frame.cpu().numpy()
    boxes = rows[:, :4] * np.array([sx, sy, sx, sy], np.float32)
    points = points * np.array([sx, sy], np.float32)
    out = []
    for f in range(n):
        idx = np.flatnonzero(frame == f)
        idx = idx[np.argsort(-rows[idx, 4], kind="stable")]
        out.append(Detections(boxes[idx].astype(np.float32), rows[idx, 4].astype(np.float32),
                              points[idx].astype(np.float32)) if len(idx) else Detections.empty())
    return out
