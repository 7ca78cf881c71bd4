"""The one preprocessing path: decode -> detect -> track one subject -> crop -> embed.

``make features`` and ``predict`` both go through ``FramePipeline``, so a prediction sees exactly what
training saw; ``identity()`` is the part of the config that must match between a store and its users.
"""
from __future__ import annotations

import logging
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np

from features import schema
from features.writer import VideoResult
from pipeline import __version__
from pipeline.config import field as cfg_field
from pipeline.config import to_dict
from stages.backbone import FEATURE_DIM, Embedder
from stages.decode import SampledFrames, sample_frames
from stages.faces import FaceConfig, FaceDetector, crop_faces, select_subject
from stages.media import MediaError, ffmpeg_version

log = logging.getLogger(__name__)
SAMPLING = "linspace-select-v1"   # evenly spaced frame indices, exact decode with a select filter


@dataclass(frozen=True)
class FeatureConfig:
    frames: int = cfg_field(16, "frames sampled per video, evenly over its whole length (T)")
    crop: int = cfg_field(224, "face crop side in pixels fed to ResNet50 (C)")
    weights: str = cfg_field("imagenet", "backbone weights: imagenet | random | auto | PATH to a state dict")
    device: str = cfg_field("auto", "auto | cpu | cuda | cuda:N")
    precision: str = cfg_field("auto", "auto (picked from the machine and recorded) | fp32 | bf16 | fp16",
                               choices=("auto", "fp32", "bf16", "fp16"))
    batch_size: int = cfg_field(64, "face crops per backbone batch (also the commit granularity)")
    prefetch: int = cfg_field(2, "videos decoded ahead of the backbone (bounds memory)")

    def validate(self) -> None:
        from pipeline.config import ConfigError
        if self.frames < 1 or self.crop < 32 or self.batch_size < 1 or self.prefetch < 1:
            raise ConfigError("frames >= 1, crop >= 32, batch_size >= 1 and prefetch >= 1 are required")


@dataclass
class Prepared:
    """A video after decode, detection and cropping; crops wait for the backbone."""
    result: VideoResult                    # arrays filled except features
    crops: np.ndarray | None = None        # (K, C, C, 3) uint8: one per valid frame, in frame order
    seconds: dict = field(default_factory=dict)


# Face options that change speed only, not which crops come out: left out of a store's identity.
SPEED_ONLY = ("chunk_mb", "cpu_engine")


def detector_identity(faces: FaceConfig) -> dict:
    return {k: v for k, v in to_dict(faces).items() if k not in SPEED_ONLY}


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "project": __version__,
           "ffmpeg": ffmpeg_version()}
    for name in ("torch", "torchvision", "h5py", "numpy", "ffmpeg-python", "mtcnn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class FramePipeline:
    """Loads the detector and backbone once; turns videos into VideoResults."""

    def __init__(self, cfg: FeatureConfig, faces: FaceConfig):
        self.cfg, self.faces = cfg, faces
        self.embedder = Embedder(cfg.weights, cfg.device, cfg.precision, cfg.batch_size, cfg.crop)
        self.detector = FaceDetector(faces, device=str(self.embedder.device))

    # ---- provenance ---------------------------------------------------------------------------------------
    def identity(self) -> dict:
        """What must match for features to be comparable (stores refuse to mix; runs refuse other stores)."""
        w = self.embedder.weights
        return {"schema_version": schema.SCHEMA_VERSION, "backbone": "torchvision.resnet50", "weights": w.name,
                "weights_sha256": w.sha256, "frames": self.cfg.frames, "crop": self.cfg.crop,
                "margin": self.faces.margin, "feature_dim": FEATURE_DIM, "detector": detector_identity(self.faces),
                "sampling": SAMPLING}

    def provenance(self, extra: dict | None = None) -> dict:
        w = self.embedder.weights
        out = {**self.identity(), "random_weights": w.random, "weights_source": w.source,
               "backbone_engine": self.embedder.describe(), "detector_engine": self.detector.describe(),
               "versions": package_versions(), "config": {"features": to_dict(self.cfg)}}
        if w.random:
            out["warning"] = ("RANDOM BACKBONE WEIGHTS: these features come from a randomly initialised "
                              "ResNet50, not ImageNet; results are for testing the pipeline only")
        out.update(extra or {})
        return out

    # ---- per video ----------------------------------------------------------------------------------------
    def decode(self, path: str) -> SampledFrames:
        return sample_frames(path, self.cfg.frames)

    def prepare(self, base: VideoResult, sampled: SampledFrames) -> Prepared:
        """Detect, track and crop one decoded video; the result's arrays hold T slots."""
        T = self.cfg.frames
        k = len(sampled.indices)
        res = base
        res.frame_index = np.full(T, -1, np.int32)
        res.frame_index[:k] = sampled.indices
        res.timestamp = np.full(T, np.nan)
        res.timestamp[:k] = sampled.timestamps
        info = sampled.info
        res.info = {"video_frames": info.n_frames, "fps": info.fps, "width": info.width, "height": info.height}
        dets = self.detector.detect(sampled.frames)
        track = select_subject(dets, sampled.frames.shape[1:3], self.faces)
        crops, valid = crop_faces(sampled.frames, track, crop=self.cfg.crop, margin=self.faces.margin,
                                  fallback=self.faces.fallback)   # (k, C, C, 3), (k,)
        res.mask = np.zeros(T, bool)
        res.mask[:k] = valid
        res.boxes = np.full((T, 4), np.nan, np.float32)
        res.boxes[:k] = track.boxes
        res.probs = np.zeros(T, np.float32)
        res.probs[:k] = track.probs
        if valid.any():
            res.status = schema.OK
        else:
            res.status, res.reason = schema.NO_FACE, "no face found in any sampled frame"
        if k < T and res.status == schema.OK:
            res.reason = f"short video: {k} of {T} frames"
        return Prepared(res, crops[valid])

    def embed(self, batch: list[Prepared]) -> list[VideoResult]:
        """Run the backbone over every crop of a batch of prepared videos at once."""
        T = self.cfg.frames
        with_crops = [p for p in batch if p.crops is not None and len(p.crops)]
        if with_crops:
            feats = self.embedder.embed(np.concatenate([p.crops for p in with_crops]))   # (sum K, 2048)
            start = 0
            for p in with_crops:
                n = len(p.crops)
                out = np.zeros((T, FEATURE_DIM), np.float16)
                out[p.result.mask] = feats[start:start + n]
                p.result.features = out
                start += n
        return [p.result for p in batch]

    def failed(self, base: VideoResult, error: Exception) -> VideoResult:
        base.status, base.reason = schema.FAILED, str(error).splitlines()[0][:schema.REASON_WIDTH]
        return base


def base_result(entry) -> VideoResult:
    return VideoResult(entry.video_id, entry.path, entry.label, entry.split, entry.group,
                       getattr(entry, "method", ""), schema.FAILED)


def prepare_entry(pipe: FramePipeline, entry, sampled: SampledFrames | MediaError) -> Prepared:
    """Prepared video or a recorded failure; never raises for a bad input file."""
    base = base_result(entry)
    if isinstance(sampled, MediaError):
        return Prepared(pipe.failed(base, sampled))
    try:
        return pipe.prepare(base, sampled)
    except (RuntimeError, ValueError) as exc:   # e.g. a frame size the detector cannot process
        log.debug("processing %s failed", entry.video_id, exc_info=True)
        return Prepared(pipe.failed(base, RuntimeError(f"processing error: {exc}")))
