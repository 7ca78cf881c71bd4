"""The project's per-video stage one, as ``../shared/bench/side_by_side.py`` calls it.

    make(frames, crop) -> object with
        run(path)    one video: decode -> detect / track / crop -> embed; returns the crops (K, C, C, 3) uint8
        embed(crops) the project's backbone engine on those crops (the floor's backbone half)
        describe()   the engine, detector and decode choices this machine got

It is exactly the path ``make features`` and ``predict`` take for a video (``FaceStage`` + ``Embedder``
through ``FramePipeline``), with random ResNet50 weights (the same FLOPs as ImageNet's).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.videos import VideoEntry  # noqa: E402
from stages.faces import FaceConfig  # noqa: E402
from stages.preprocess import FeatureConfig, FramePipeline  # noqa: E402


class PerVideo:
    def __init__(self, frames: int, crop: int):
        cfg = FeatureConfig(frames=frames, crop=crop, weights="random", batch_size=max(frames, 8))
        self.pipe = FramePipeline(cfg, FaceConfig())

    def run(self, path):
        prepared = self.pipe.stage.run(VideoEntry(Path(path).name, str(path)))
        self.pipe.embed([prepared])
        return prepared.crops

    def embed(self, crops):
        return self.pipe.embedder.embed(crops)

    def describe(self) -> dict:
        return {"engine": self.pipe.embedder.describe(), "detector": self.pipe.stage.detector.describe(),
                "sampling": self.pipe.cfg.sampling}


def make(frames: int, crop: int) -> PerVideo:
    return PerVideo(frames, crop)
