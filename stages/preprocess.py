"""The one preprocessing path: decode -> detect -> track one subject -> crop -> embed.

Two objects, because two kinds of worker need them: ``FaceStage`` turns a video into face crops (decode,
detection, tracking, cropping: CPU tasks of the Ray engine run only this), and ``stages.backbone.Embedder``
turns crops into features. ``FramePipeline`` holds both for a process that does everything, which is what
``make features``, ``predict``, ``evaluate`` and the service use, so a prediction sees exactly what training
saw. ``store_identity`` is what must match between a store and its users.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from features import schema
from features.writer import VideoResult
from pipeline.core.config import ConfigError, identity_of, to_dict
from pipeline.core.config import field as cfg_field
from pipeline.core.versions import package_versions
from pipeline.core.videos import VideoEntry
from stages import perturb
from stages.backbone import FEATURE_DIM, Embedder, WeightsInfo
from stages.decode import SCHEMES, FramePool, SampledFrames, sample_frames
from stages.faces import FaceConfig, FaceDetector, crop_faces, select_subject
from stages.faces.second_look import second_look, sources
from stages.media import MediaError, ffmpeg_version

log = logging.getLogger(__name__)
BACKBONE = "torchvision.resnet50"


@dataclass(frozen=True)
class FeatureConfig:
    frames: int = cfg_field(16, "frames sampled per video, evenly over its whole length (T)")
    crop: int = cfg_field(224, "face crop side in pixels fed to ResNet50 (C)")
    sampling: str = cfg_field("noref", "noref: evenly spaced targets, each the nearest frame decodable without "
                              "decoding the frames nothing refers to (exact, cheaper; strict where a codec "
                              "gains nothing) | strict: exactly the evenly spaced frames",
                              choices=tuple(SCHEMES))
    weights: str = cfg_field("imagenet", "backbone weights: imagenet | random | auto | PATH to a state dict",
                             identity=False)   # the store records which weights (name and sha256) instead
    device: str = cfg_field("auto", "auto | cpu | cuda | cuda:N", identity=False)
    precision: str = cfg_field("auto", "auto (from the machine's capability, recorded) | probe (timed once "
                               "per machine, cached) | fp32 | bf16 | fp16",
                               choices=("auto", "probe", "fp32", "bf16", "fp16"), identity=False)
    batch_size: int = cfg_field(64, "face crops per backbone batch", identity=False)
    prefetch: int = cfg_field(2, "videos decoded ahead of the backbone (bounds memory)", identity=False)
    perturb: str = cfg_field("", "degrade the decoded frames before detection, for robustness tests: KIND:LEVEL "
                             "with KIND jpeg|h264|blur|noise|resize|contrast|saturation, LEVEL 1-5 "
                             "(DeeperForensics-1.0 levels; see stages/perturb.py)", omit_default=True)

    def validate(self) -> None:
        if self.frames < 1 or self.crop < 32 or self.batch_size < 1 or self.prefetch < 1:
            raise ConfigError("frames >= 1, crop >= 32, batch_size >= 1 and prefetch >= 1 are required")
        if self.sampling not in SCHEMES:
            raise ConfigError(f"sampling must be one of {', '.join(SCHEMES)}, got {self.sampling!r}")
        if self.perturb:
            perturb.parse(self.perturb)


@dataclass
class Prepared:
    """A video after decode, detection and cropping; crops wait for the backbone."""
    result: VideoResult                    # arrays filled except features
    crops: np.ndarray | None = None        # (K, C, C, 3) uint8: one per valid frame, in frame order
    seconds: dict = field(default_factory=dict)


def store_identity(cfg: FeatureConfig, faces: FaceConfig, weights: WeightsInfo, numerics: dict) -> dict:
    """What must match for features to be comparable: stores refuse to mix, runs refuse other stores,
    predict refuses other preprocessing. Built from the config fields marked as identity, plus the weights
    actually loaded and the backbone's numeric engine."""
    return {"schema_version": schema.SCHEMA_VERSION, "backbone": BACKBONE, "weights": weights.name,
            "weights_sha256": weights.sha256, "feature_dim": FEATURE_DIM, **identity_of(cfg),
            "sampling": SCHEMES[cfg.sampling], "margin": faces.margin, "detector": identity_of(faces),
            "backbone_numerics": numerics}


def base_result(entry: VideoEntry) -> VideoResult:
    return VideoResult(entry.video_id, entry.path, entry.label, entry.split, entry.group, entry.method,
                       schema.FAILED)


def failed(entry: VideoEntry, error: Exception) -> Prepared:
    res = base_result(entry)
    res.reason = str(error).splitlines()[0][:schema.REASON_WIDTH] if str(error) else type(error).__name__
    return Prepared(res)


class FaceStage:
    """A video -> its face crops: decode T frames, detect, track one subject, crop. Never raises for a bad
    input file: the result is then a recorded failure with its reason."""

    def __init__(self, cfg: FeatureConfig, faces: FaceConfig, device: str = "cpu"):
        self.cfg, self.faces = cfg, faces
        self.detector = FaceDetector(faces, device=device)
        self.pool = FramePool()
        self.ffmpeg_threads = 0          # ffmpeg's own choice; an engine sharing the cores sets it
        self.perturbation = perturb.parse(cfg.perturb) if cfg.perturb else None

    def decode(self, path: str) -> SampledFrames | MediaError:
        """The one place a path becomes decoded frames, or the reason it cannot."""
        try:
            return sample_frames(path, self.cfg.frames, self.cfg.sampling, threads=self.ffmpeg_threads,
                                 pool=self.pool)
        except MediaError as exc:
            return exc

    def prepare(self, entry: VideoEntry, sampled: SampledFrames | MediaError) -> Prepared:
        """Detect, track and crop one decoded video; the result's arrays hold T slots."""
        if isinstance(sampled, MediaError):
            return failed(entry, sampled)
        try:
            return self._prepare(base_result(entry), sampled)
        except (RuntimeError, ValueError) as exc:   # e.g. a frame size the detector cannot process
            log.debug("processing %s failed", entry.video_id, exc_info=True)
            return failed(entry, RuntimeError(f"processing error: {exc}"))
        finally:
            self.pool.give(sampled.frames)         # the crops are cut: the frames' buffer can be reused

    def run(self, entry: VideoEntry) -> Prepared:
        return self.prepare(entry, self.decode(entry.path))

    def _prepare(self, res: VideoResult, sampled: SampledFrames) -> Prepared:
        if self.perturbation is not None:      # a degraded copy of the video, before anything looks at it
            sampled = replace(sampled, frames=self.perturbation.apply(sampled.frames, res.video_id))
        T = self.cfg.frames
        k = len(sampled.indices)
        res.frame_index = np.full(T, -1, np.int32)
        res.frame_index[:k] = sampled.indices
        res.timestamp = np.full(T, np.nan)
        res.timestamp[:k] = sampled.timestamps
        info = sampled.info
        res.info = {"video_frames": info.n_frames, "fps": info.fps, "width": info.width, "height": info.height}
        dets = self.detector.detect(sampled.frames)
        track = select_subject(dets, sampled.frames.shape[1:3], self.faces)
        if self.faces.second_look:
            track = second_look(sampled.frames, dets, track, self.detector).track
        crops, valid = crop_faces(sampled.frames, track, crop=self.cfg.crop, margin=self.faces.margin,
                                  fallback=self.faces.fallback)   # (k, C, C, 3), (k,)
        res.mask = np.zeros(T, bool)
        res.mask[:k] = valid
        res.boxes = np.full((T, 4), np.nan, np.float32)
        res.boxes[:k] = track.boxes
        res.probs = np.zeros(T, np.float32)
        res.probs[:k] = track.probs
        res.source = np.zeros(T, np.uint8)
        res.source[:k] = sources(track)
        if valid.any():
            res.status = schema.OK
        else:
            res.status, res.reason = schema.NO_FACE, "no face found in any sampled frame"
        if k < T and res.status == schema.OK:
            res.reason = f"short video: {k} of {T} frames"
        return Prepared(res, crops[valid])


class FramePipeline:
    """Stage one in one process: a ``FaceStage`` and an ``Embedder``, loaded once, on one device.

    ``embedder`` replaces the torch ``Embedder`` with another backbone engine of the same interface
    (``embed``, ``device``, ``weights``, ``numerics``, ``describe``): ``predict --runtime onnx`` passes one."""

    def __init__(self, cfg: FeatureConfig, faces: FaceConfig, embedder=None):
        self.cfg, self.faces = cfg, faces
        self.embedder = embedder or Embedder(cfg.weights, cfg.device, cfg.precision, cfg.batch_size, cfg.crop)
        self.stage = FaceStage(cfg, faces, device=str(self.embedder.device))

    def identity(self) -> dict:
        return store_identity(self.cfg, self.faces, self.embedder.weights, self.embedder.numerics())

    def provenance(self, extra: dict | None = None) -> dict:
        w = self.embedder.weights
        out = {**self.identity(), "random_weights": w.random, "weights_source": w.source,
               "backbone_engine": self.embedder.describe(), "detector_engine": self.stage.detector.describe(),
               "versions": {**package_versions("torch", "torchvision", "h5py", "numpy", "ffmpeg-python", "mtcnn"),
                            "ffmpeg": ffmpeg_version()},
               "config": {"features": to_dict(self.cfg)}}
        if self.stage.perturbation is not None:
            out["perturbation"] = self.stage.perturbation.describe()
        if w.random:
            out["warning"] = ("RANDOM BACKBONE WEIGHTS: these features come from a randomly initialised "
                              "ResNet50, not ImageNet; results are for testing the pipeline only")
        out.update(extra or {})
        return out

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
