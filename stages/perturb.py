"""Robustness perturbations: decoded frames degraded the way DeeperForensics-1.0 degrades its test videos.

``parse("jpeg:3")`` gives a ``Perturbation`` (a kind and a level from 1, mild, to 5, severe); its ``apply``
takes the sampled frames (K, H, W, 3) uint8 RGB of one video, before face detection, and returns degraded
frames of the same shape. ``features --perturb KIND:LEVEL`` runs it inside stage one, so a perturbed copy
of a store is made by the very preprocessing path of the clean one, and its identity says which
perturbation it holds.

The levels follow DeeperForensics-1.0 (Jiang et al., CVPR 2020; the parameter tables of
https://github.com/EndlessSora/DeeperForensics-1.0/blob/master/perturbation/add_distortion_to_video.py):

    kind        parameter (levels 1..5)                       DeeperForensics-1.0 name
    saturation  chroma scale 0.4 0.3 0.2 0.1 0.0               CS, colour saturation change
    contrast    intensity scale 0.85 0.725 0.6 0.475 0.35      CC, colour contrast change
    noise       variance 0.001 0.002 0.005 0.01 0.05           GNC, white Gaussian noise in YCbCr
    blur        kernel 7 9 13 17 21 px, sigma = kernel / 6     GB, Gaussian blur
    resize      factor 2 3 4 5 6 (down, then back up)          "JPEG" (their code resizes, it never encodes)
    h264        CRF 30 32 35 38 40 (x264, through ffmpeg)      VC, video compression
    jpeg        quality 25 18 15 10 7                          not in DeeperForensics: ImageNet-C's JPEG
                                                               severities (Hendrycks & Dietterich, ICLR 2019)

Where the reference code has quirks, the intent is kept and the difference written here: YCbCr is full-range
BT.601 (the JPEG convention) for saturation and noise, noisy values are rounded rather than truncated,
bilinear resizing and the blur run in floating point (OpenCV's uint8 paths use fixed point). Their
block-wise distortion (BW) is not implemented. H.264 re-encodes the sampled frames as one short clip, which
is what stage one sees of a re-encoded video only approximately: x264 predicts across the sampled frames,
not across the original neighbours.

Only ``noise`` draws random numbers; they come from a generator seeded by the video id, kind and level, so
the same video always gets the same noise and a perturbed store is reproducible.
"""
from __future__ import annotations

import hashlib
import io
import subprocess
from dataclasses import dataclass

import numpy as np

from pipeline.core.config import ConfigError
from stages.media import ffmpeg_cmd, short_reason

LEVELS = {
    "jpeg": (25, 18, 15, 10, 7),
    "h264": (30, 32, 35, 38, 40),
    "blur": (7, 9, 13, 17, 21),
    "noise": (0.001, 0.002, 0.005, 0.01, 0.05),
    "resize": (2, 3, 4, 5, 6),
    "contrast": (0.85, 0.725, 0.6, 0.475, 0.35),
    "saturation": (0.4, 0.3, 0.2, 0.1, 0.0),
}
PARAMETER = {"jpeg": "JPEG quality", "h264": "x264 CRF", "blur": "Gaussian kernel (px)",
             "noise": "noise variance (YCbCr in [0, 1])", "resize": "down-and-up factor",
             "contrast": "intensity scale", "saturation": "chroma scale"}
SOURCE = {k: "DeeperForensics-1.0" for k in LEVELS} | {"jpeg": "ImageNet-C (Hendrycks & Dietterich 2019)"}
X264 = ("-c:v", "libx264", "-preset", "medium", "-threads", "1", "-pix_fmt", "yuv420p")   # one thread: bit-exact

# Full-range BT.601 (JFIF): RGB -> YCbCr with chroma centred on 128, and back.
_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_TO_RGB = np.linalg.inv(_TO_YCC)
_CENTRE = np.array([0.0, 128.0, 128.0])


class PerturbError(RuntimeError):
    """A perturbation that could not be applied to one video (recorded as that video's failure)."""


@dataclass(frozen=True)
class Perturbation:
    kind: str     # a key of LEVELS
    level: int    # 1 (mild) .. 5 (severe)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.level}"

    @property
    def param(self) -> float:
        return LEVELS[self.kind][self.level - 1]

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "level": self.level, "parameter": PARAMETER[self.kind],
                "value": self.param, "levels": list(LEVELS[self.kind]), "source": SOURCE[self.kind]}

    def apply(self, frames: np.ndarray, video_id: str = "") -> np.ndarray:
        """frames (K, H, W, 3) uint8 RGB -> degraded frames, same shape and dtype (a new array)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (K, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        if len(frames) == 0:
            return frames.copy()
        if self.kind == "noise":
            return gaussian_noise(frames, self.param, np.random.default_rng(seed_of(video_id, self.name)))
        return _APPLY[self.kind](frames, self.param)


def parse(text: str) -> Perturbation:
    """``"KIND:LEVEL"`` -> Perturbation; a one-line error lists the kinds and levels."""
    kind, sep, level = str(text).strip().lower().partition(":")
    if kind not in LEVELS or not sep or level not in ("1", "2", "3", "4", "5"):
        raise ConfigError(f"perturbation {text!r}: expected KIND:LEVEL with KIND one of {', '.join(LEVELS)} "
                          f"and LEVEL 1 (mild) to 5 (severe), e.g. jpeg:3")
    return Perturbation(kind, int(level))


def seed_of(video_id: str, name: str) -> int:
    """A 64-bit seed from the video id and the perturbation's name: stable across runs and machines."""
    return int.from_bytes(hashlib.sha256(f"{name}\0{video_id}".encode()).digest()[:8], "little")


# ---- the perturbations, each (K, H, W, 3) uint8 -> (K, H, W, 3) uint8 ------------------------------------
def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def to_ycbcr(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float64) @ _TO_YCC.T + _CENTRE          # (K, H, W, 3) Y, Cb, Cr in [0, 255]


def to_rgb(ycc: np.ndarray) -> np.ndarray:
    return (ycc - _CENTRE) @ _TO_RGB.T


def saturation(frames: np.ndarray, scale: float) -> np.ndarray:
    """Chroma (Cb, Cr) pulled towards grey by ``scale`` (0: greyscale), luma kept."""
    ycc = to_ycbcr(frames)
    ycc[..., 1:] = 128.0 + (ycc[..., 1:] - 128.0) * scale
    return _to_uint8(to_rgb(ycc))


def contrast(frames: np.ndarray, scale: float) -> np.ndarray:
    """Every intensity times ``scale``, truncated, exactly as DeeperForensics-1.0 computes it."""
    return (frames.astype(np.float32) * np.float32(scale)).astype(np.uint8)


def gaussian_noise(frames: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise of ``variance`` added to Y, Cb and Cr scaled to [0, 1]."""
    ycc = to_ycbcr(frames) / 255.0
    ycc += np.sqrt(variance) * rng.standard_normal(ycc.shape)
    return _to_uint8(to_rgb(ycc * 255.0))


def gaussian_kernel(size: int) -> np.ndarray:
    """OpenCV's getGaussianKernel(size, size / 6): (size,) weights summing to 1."""
    x = np.arange(size) - (size - 1) / 2
    k = np.exp(-x ** 2 / (2 * (size / 6.0) ** 2))
    return k / k.sum()


def gaussian_blur(frames: np.ndarray, size: int) -> np.ndarray:
    """Separable Gaussian blur over H and W; borders mirrored without repeating the edge (OpenCV's
    default, BORDER_REFLECT_101)."""
    from scipy.ndimage import correlate1d
    k = gaussian_kernel(int(size))
    out = correlate1d(frames.astype(np.float64), k, axis=1, mode="mirror")
    return _to_uint8(correlate1d(out, k, axis=2, mode="mirror"))


def resize_down_up(frames: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear (half-pixel centres, no antialiasing: OpenCV's INTER_LINEAR) down to 1/factor of the size,
    then back up: the detail lost is gone for good."""
    import torch
    import torch.nn.functional as F
    k, h, w, _ = frames.shape
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).double()       # (K, 3, H, W)
    small = F.interpolate(x, size=(max(1, h // factor), max(1, w // factor)), mode="bilinear",
                          align_corners=False, antialias=False)
    back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return _to_uint8(back.permute(0, 2, 3, 1).numpy())


def jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    """Each frame encoded as a JPEG at ``quality`` (Pillow's libjpeg, 4:2:0) and decoded."""
    from PIL import Image
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
        out[i] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def _ffmpeg(args: list[str], data: bytes, what: str) -> bytes:
    proc = subprocess.run([*ffmpeg_cmd(), "-hide_banner", "-loglevel", "error", *args], input=data,
                          capture_output=True)
    if proc.returncode != 0:
        raise PerturbError(f"h264 perturbation: {what} failed: {short_reason(proc.stderr.decode(errors='replace'))}")
    return proc.stdout


def h264(frames: np.ndarray, crf: int) -> np.ndarray:
    """The frames encoded as one H.264 clip at ``crf`` (x264, yuv420p, odd sizes padded) and decoded."""
    k, h, w, _ = frames.shape
    pw, ph = w + w % 2, h + h % 2                                    # 4:2:0 needs even sizes
    stream = _ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "25", "-i", "pipe:0",
                      "-vf", f"pad={pw}:{ph}", *X264, "-crf", str(int(crf)), "-f", "h264", "pipe:1"],
                     np.ascontiguousarray(frames).tobytes(), "encoding")
    raw = _ffmpeg(["-f", "h264", "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], stream,
                  "decoding")
    if len(raw) != k * ph * pw * 3:
        raise PerturbError(f"h264 perturbation: {len(raw) // (ph * pw * 3)} frames came back, {k} went in")
    return np.frombuffer(raw, np.uint8).reshape(k, ph, pw, 3)[:, :h, :w].copy()


_APPLY = {"jpeg": jpeg, "h264": h264, "blur": gaussian_blur, "resize": resize_down_up, "contrast": contrast,
          "saturation": saturation}
