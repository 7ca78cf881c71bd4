"""Stage two's data: the store's splits, in memory when they fit and streamed from the HDF5 file otherwise.

Training never decodes video: everything here reads the feature store. Only videos with a label (0/1) and a
split of train/val/test are used; videos with no valid frame stay in val/test (they are scored 0.5 and
flagged) but are never trained on.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from features.store import FeatureStore
from pipeline.core.errors import PipelineError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


@dataclass
class SplitData:
    """One split's videos. ``fetch`` returns float16 features (b, T, D) and masks (b, T) for indices."""
    name: str
    video_ids: list[str]
    groups: list[str]
    labels: np.ndarray          # (N,) int64, 0 real 1 fake
    rows: np.ndarray            # (N,) int64 store rows
    n_valid: np.ndarray         # (N,) int64 frames with a face
    store: FeatureStore
    features: np.ndarray | None = None   # (N, T, D) float16 when held in memory
    mask: np.ndarray | None = None       # (N, T) bool

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def has_frames(self) -> np.ndarray:
        return self.n_valid > 0

    def load_into_memory(self) -> None:
        self.features = self.store.read_rows("features", self.rows)
        self.mask = self.store.read_rows("mask", self.rows)

    def fetch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.features is not None:
            return self.features[idx], self.mask[idx]
        rows = self.rows[idx]   # streamed: one HDF5 read per batch (read_rows sorts and restores the order)
        return self.store.read_rows("features", rows), self.store.read_rows("mask", rows)


def _available_bytes() -> float:
    """MemAvailable from /proc/meminfo; infinity where that file does not exist."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


class TrainingData:
    """The store opened for training: provenance, the three splits, a fingerprint of the videos used."""

    def __init__(self, store_path: str | Path, max_memory_gb: float):
        self.store = FeatureStore.open(store_path)
        self.provenance = dict(self.store.provenance)
        self.identity = dict(self.store.identity)
        self.frames, self.dim = int(self.store.frames), int(self.store.dim)
        records = [r for r in self.store.videos() if r.label in (0, 1) and r.split in SPLITS]
        skipped = len(self.store.videos()) - len(records)
        if skipped:
            log.warning("%d video(s) without a 0/1 label or a train/val/test split are not used", skipped)
        self.splits = {s: self._split(s, [r for r in records if r.split == s]) for s in SPLITS}
        self.fingerprint = hashlib.sha256("\n".join(sorted(
            f"{r.video_id}\t{r.split}\t{r.label}\t{r.status}\t{r.n_valid}" for r in records)).encode()).hexdigest()
        self.counts = {s: len(d) for s, d in self.splits.items()}
        need = sum(self.counts.values()) * self.frames * (self.dim * 2 + 1)
        self.in_memory = need <= min(max_memory_gb * 2**30, 0.5 * _available_bytes())
        if self.in_memory:
            for split in self.splits.values():
                split.load_into_memory()
        log.info("store %s: %s videos (train/val/test), %.1f MB of features, %s", store_path,
                 "/".join(str(self.counts[s]) for s in SPLITS), need / 2**20,
                 "loaded into memory" if self.in_memory else f"streamed (more than {max_memory_gb} GB)")

    def _split(self, name: str, recs: list) -> SplitData:
        return SplitData(name, [r.video_id for r in recs], [r.group or r.video_id for r in recs],
                         np.array([r.label for r in recs], dtype=np.int64),
                         np.array([r.row for r in recs], dtype=np.int64),
                         np.array([r.n_valid for r in recs], dtype=np.int64), self.store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "TrainingData":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def training_rows(self) -> np.ndarray:
        """Indices into the train split of videos that can be trained on (at least one face)."""
        train = self.splits["train"]
        idx = np.flatnonzero(train.has_frames)
        present = set(train.labels[idx].tolist())
        if present != {0, 1}:
            have = "no videos" if not present else f"only {('real', 'fake')[present.pop()]} videos"
            raise PipelineError(f"the training split has {have} with a face; training needs real and fake "
                                f"videos (store summary: `make inspect STORE=...`)")
        return idx

    def standardisation(self, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and std (D,) over the valid frames of the training split, in float64."""
        train, idx = self.splits["train"], self.training_rows()
        total = np.zeros(self.dim)
        total_sq = np.zeros(self.dim)
        count = 0
        for start in range(0, len(idx), block):
            x, m = train.fetch(idx[start:start + block])
            frames = x[m].astype(np.float64)                      # (valid frames, D)
            total += frames.sum(0)
            total_sq += np.square(frames).sum(0)
            count += len(frames)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
        # A feature (almost) constant in training would turn any change on new data into a huge value:
        # floor each std at a tenth of the typical one.
        std = np.maximum(std, 0.1 * np.median(std) if np.median(std) > 0 else 1.0)
        return mean.astype(np.float32), std.astype(np.float32)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights (2,) so that each class carries half of the loss: n / (2 * n_c)."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return torch.tensor(len(labels) / (2.0 * counts), dtype=torch.float32)


def batches(idx: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of ``idx``; a last batch of one joins the previous one (BatchNorm needs two)."""
    order = idx[rng.permutation(len(idx))]
    out = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] = np.concatenate([out[-2], out.pop()])
    return out


def augment(x: torch.Tensor, mask: torch.Tensor, frame_dropout: float, jitter: int,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature-level augmentation of a training batch x (B, T, D), mask (B, T).

    - frame dropout: each valid frame is masked out with probability ``frame_dropout`` (a video keeps at
      least one), as if the detector had missed it;
    - temporal jitter: every frame slot t takes frame clamp(t + d_t) with d_t uniform in [-jitter, jitter],
      sorted so the order of time is kept, as if frames had been sampled a little off their even spacing.
    Random draws come from ``gen`` on the CPU, so a seed gives the same batch on any device.
    """
    b, t = mask.shape
    if jitter > 0:
        shift = torch.randint(-jitter, jitter + 1, (b, t), generator=gen)
        src = (torch.arange(t).unsqueeze(0) + shift).clamp(0, t - 1).sort(dim=1).values.to(x.device)  # (B, T)
        x_j = torch.gather(x, 1, src.unsqueeze(-1).expand_as(x))
        mask_j = torch.gather(mask, 1, src)
        ok = mask_j.any(1)                               # a video whose faces all fell out keeps its frames
        x = torch.where(ok[:, None, None], x_j, x)
        mask = torch.where(ok[:, None], mask_j, mask)
    if frame_dropout > 0:
        keep = (torch.rand((b, t), generator=gen) >= frame_dropout).to(mask.device)
        dropped = mask & keep
        mask = torch.where(dropped.any(1, keepdim=True), dropped, mask)   # never drop a video's last frame
    return x, mask
