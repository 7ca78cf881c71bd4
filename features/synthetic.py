"""Stores made from arrays instead of video, for tests and experiments on heads."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from features import schema
from features.writer import StoreWriter, VideoResult


def synthetic_provenance(frames: int, dim: int, **overrides) -> tuple[dict, dict]:
    identity = {"schema_version": schema.SCHEMA_VERSION, "backbone": "synthetic", "weights": "synthetic",
                "weights_sha256": "0" * 64, "frames": frames, "crop": 0, "margin": 0.0, "feature_dim": dim,
                "detector": {}, "sampling": "synthetic"}
    identity.update({k: v for k, v in overrides.items() if k in identity})
    provenance = {**identity, "random_weights": False, "synthetic": True, "versions": {}, "config": {},
                  "manifest_sha256": ""}
    provenance.update(overrides)
    return provenance, identity


def write_synthetic_store(path, features, mask, labels, splits, groups=None, video_ids=None,
                          provenance_overrides=None) -> Path:
    features = np.asarray(features, dtype=np.float16)   # (N, T, D)
    mask = np.asarray(mask, dtype=bool)                  # (N, T)
    n, frames, dim = features.shape
    ids = list(video_ids) if video_ids is not None else [f"synthetic/{i:06d}" for i in range(n)]
    groups = list(groups) if groups is not None else ids
    provenance, identity = synthetic_provenance(frames, dim, **(provenance_overrides or {}))
    results = [VideoResult(ids[i], ids[i], int(labels[i]), str(splits[i]), str(groups[i]), "",
                           schema.OK if mask[i].any() else schema.NO_FACE, "",
                           features=features[i], mask=mask[i],
                           frame_index=np.where(mask[i], np.arange(frames), -1))
               for i in range(n)]
    with StoreWriter(path, provenance, identity, results) as writer:
        for start in range(0, n, 256):
            writer.commit(results[start:start + 256])
    return Path(path)
