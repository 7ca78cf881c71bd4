"""A small generated dataset of real/fake face clips: the demo's input and a test fixture, not a benchmark.

Each source ``k`` is a real photograph that an installed package ships, filmed by a seeded virtual handheld
camera (smooth pan, zoom and roll, lighting drift, sensor noise). The source yields a pair:
``real/src{k:03d}_real.mp4`` and ``fake/src{k:03d}_fake.mp4`` share every camera, lighting and noise draw;
the fake adds a per-frame self-blend in the spirit of Self-Blended Images (Shiohara and Yamasaki, CVPR 2022,
https://arxiv.org/abs/2204.08376): a slightly warped, rescaled, colour-shifted copy of the frame blended
back into the face through a soft mask whose parameters jitter from frame to frame. So a fake differs from
its real only in and near the face, with blending seams and temporal flicker. Both share group
``src{k:03d}`` so a leak-free split keeps them together. Output bytes are deterministic for a seed.
"""
from __future__ import annotations

import csv
import functools
import io
import hashlib
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ffmpeg
import numpy as np
from scipy import ndimage
from skimage.transform import warp

from pipeline.core.atomic import replacing, write_text
from pipeline.core.config import ConfigError, field, save
from pipeline.core.errors import PipelineError
from pipeline.core.progress import SILENT, Progress
from stages.media import ffmpeg_exe

log = logging.getLogger(__name__)

COLUMNS = ("video_id", "path", "label", "group", "identity", "sha256")


class SampleError(PipelineError):
    """The sample dataset cannot be written (bad OUT folder, ffmpeg failure); the message says why."""


@dataclass(frozen=True)
class SampleConfig:
    out: str = field("data/sample", "folder to write real/, fake/ and manifest.csv into", cli=False)
    videos: int = field(8, "number of clips: pairs of real + fake from one source each; odd N adds a real")
    seed: int = field(0, "seed of every random draw (same seed -> byte-identical clips)")
    width: int = field(256, "frame width in pixels (even: yuv420p)")
    height: int = field(256, "frame height in pixels (even: yuv420p)")
    frames: int = field(24, "frames per clip")
    fps: int = field(12, "frames per second")
    face_frac: float = field(0.45, "face height as a fraction of the frame height (before zoom)")
    crf: int = field(18, "x264 constant rate factor (lower: better quality, bigger files)")

    def __post_init__(self) -> None:
        if self.videos < 1:
            raise ConfigError(f"--videos {self.videos}: expected at least 1")
        if self.seed < 0:
            raise ConfigError(f"--seed {self.seed}: expected 0 or more")
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise ConfigError(f"--width/--height {self.width}x{self.height}: expected even sizes >= 64 "
                              "(H.264 yuv420p needs even sizes)")
        if self.frames < 2 or self.fps < 1:
            raise ConfigError(f"--frames {self.frames} --fps {self.fps}: expected frames >= 2 and fps >= 1")
        if not 0.1 <= self.face_frac <= 0.9:
            raise ConfigError(f"--face-frac {self.face_frac}: expected a fraction in [0.1, 0.9]")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"--crf {self.crf}: expected 0..51")


# ---------------------------------------------------------------- photos ------------------------------------
def _astronaut() -> np.ndarray:
    from skimage import data
    return data.astronaut()


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook, image
    return image.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@dataclass(frozen=True)
class Photo:
    name: str                                 # the manifest's identity column
    face: tuple[float, float, float, float]   # x0, y0, x1, y1 face box in photo pixels
    load: Callable[[], np.ndarray]            # -> (H, W, 3) uint8 RGB


# Face boxes measured once with facenet-pytorch 2.6.0 MTCNN(keep_all=True).detect() on the full-size photos:
#   astronaut (512x512):        (181.1, 62.2, 267.7, 172.1), p=0.99999, the only face
#   grace_hopper (512w x 600h): (174.4, 119.6, 355.6, 340.5), p=0.99982, the only face
# (skimage's camera() was left out: greyscale, and its 55x73 px face shrinks below MTCNN's reach here.)
PHOTOS = (Photo("astronaut", (181.1, 62.2, 267.7, 172.1), _astronaut),
          Photo("grace_hopper", (174.4, 119.6, 355.6, 340.5), _grace_hopper))


@functools.lru_cache(maxsize=None)
def photo_pixels(index: int, flip: bool) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Photo ``index`` as float32 (H, W, 3) and its face box, mirrored left-right when ``flip``."""
    photo = PHOTOS[index]
    img = np.asarray(photo.load(), dtype=np.float32)[..., :3]
    x0, y0, x1, y1 = photo.face
    if flip:
        img, (x0, x1) = img[:, ::-1], (img.shape[1] - x1, img.shape[1] - x0)
    return np.ascontiguousarray(img), (x0, y0, x1, y1)   # cached: callers must not write to it


# ---------------------------------------------------------------- camera ------------------------------------
def _waves(rng: np.random.Generator, t: np.ndarray, amp: float, low: float, high: float,
           parts: int = 3) -> np.ndarray:
    """(T,) a sum of ``parts`` sines with random frequencies in [low, high] Hz and phases, |value| <= amp."""
    freq, phase = rng.uniform(low, high, parts), rng.uniform(0, 2 * np.pi, parts)
    weight = rng.dirichlet(np.ones(parts))
    return amp * (weight[:, None] * np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])).sum(0)


@dataclass(frozen=True)
class Camera:
    """One source's handheld camera: slow drift plus a little shake (T = frames)."""
    pan: np.ndarray     # (T, 2) x, y offset of the view centre, as a fraction of the view height
    zoom: np.ndarray    # (T,) > 1 zooms in
    angle: np.ndarray   # (T,) roll in radians
    gain: np.ndarray    # (T, 3) brightness drift x white-balance drift, per RGB channel
    offset: np.ndarray  # (T,) black level drift, grey levels
    noise: float        # sensor noise sigma, grey levels (drawn fresh every frame)


def draw_camera(rng: np.random.Generator, frames: int, fps: int) -> Camera:
    t = np.arange(frames) / fps
    pan = np.stack([rng.uniform(-0.03, 0.03) + _waves(rng, t, 0.04, 0.1, 0.5) + _waves(rng, t, 0.004, 2, 5)
                    for _ in range(2)], axis=1)
    zoom = rng.uniform(0.95, 1.05) * np.exp(_waves(rng, t, 0.06, 0.1, 0.5))
    angle = np.radians(_waves(rng, t, 3.0, 0.1, 0.4) + _waves(rng, t, 0.3, 2, 5))
    gain = (1 + _waves(rng, t, 0.08, 0.1, 0.4))[:, None] * np.stack(
        [1 + _waves(rng, t, 0.03, 0.05, 0.3) for _ in range(3)], axis=1)
    return Camera(pan, zoom, angle, gain, _waves(rng, t, 6.0, 0.1, 0.4), float(rng.uniform(1.5, 3.0)))


def _rotation(angle: float, scale: float = 1.0) -> np.ndarray:
    """(2, 2) rotation by ``angle`` radians times ``scale``, in (x, y) = (column, row) order."""
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[cos, -sin], [sin, cos]])


def _affine(linear: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(3, 3) homogeneous map ``p -> linear @ (p - dst) + src``: output ``dst`` reads input ``src``."""
    m = np.eye(3)
    m[:2, :2], m[:2, 2] = linear, src - linear @ dst
    return m


def view(cam: Camera, i: int, face: tuple[float, ...], photo_hw: tuple[int, int], size_hw: tuple[int, int],
         face_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``i``'s view: (3, 3) map of frame (x, y) -> photo (x, y), and the face box (4,) xyxy in the frame."""
    (ph, pw), (h, w) = photo_hw, size_hw
    x0, y0, x1, y1 = face
    view_h = (y1 - y0) / face_frac / cam.zoom[i]          # photo pixels spanned by the frame height
    view_w = view_h * w / h
    # the face sits a little above the centre; the view stays inside the photo when it fits
    cx = (x0 + x1) / 2 + cam.pan[i, 0] * view_h
    cy = (y0 + y1) / 2 + (0.05 + cam.pan[i, 1]) * view_h
    cx = np.clip(cx, view_w / 2, pw - view_w / 2) if view_w < pw else pw / 2
    cy = np.clip(cy, view_h / 2, ph - view_h / 2) if view_h < ph else ph / 2
    m = _affine(_rotation(cam.angle[i], view_h / h), np.array([cx, cy]), np.array([(w - 1) / 2, (h - 1) / 2]))
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]) @ np.linalg.inv(m).T  # (4, 3)
    box = np.array([*corners[:, :2].min(0), *corners[:, :2].max(0)], dtype=np.float32)
    return m, box


def _warp(img: np.ndarray, matrix: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resample: output pixel (x, y) reads ``img`` at ``matrix @ (x, y, 1)``; (H, W, 3) float32."""
    return warp(img, matrix, output_shape=size_hw, order=1, mode="reflect", preserve_range=True).astype(np.float32)


def film(img: np.ndarray, cam: Camera, i: int, matrix: np.ndarray, size_hw: tuple[int, int],
         rng: np.random.Generator) -> np.ndarray:
    """Frame ``i`` as the camera records it: (H, W, 3) float32, unclipped (noise drawn from ``rng``)."""
    frame = _warp(img, matrix, size_hw) * cam.gain[i] + cam.offset[i]
    return frame + cam.noise * rng.standard_normal(frame.shape, dtype=np.float32)


# ---------------------------------------------------------------- self-blend --------------------------------
@dataclass(frozen=True)
class Blend:
    """Parameters of one SBI-like blend; a clip draws a base and each frame jitters around it."""
    shift: np.ndarray   # (2,) source translation, fraction of the face height
    scale: float        # source rescale about the face centre
    angle: float        # source rotation, radians
    gain: np.ndarray    # (3,) per-channel colour gain of the source
    bias: np.ndarray    # (3,) per-channel colour offset, grey levels
    detail: float       # unsharp amount: < 0 blurs the source, > 0 sharpens it
    radius: np.ndarray  # (2,) mask ellipse radii / face box half sizes (erosion < 1 < dilation)
    feather: float      # mask Gaussian sigma, fraction of the face height
    alpha: float        # blend strength


def draw_blend(rng: np.random.Generator) -> Blend:
    # SBI picks its blend ratio from {0.25, 0.5, 0.75, 1, 1, 1}; a video keeps a strong base and flickers.
    return Blend(shift=rng.uniform(-0.03, 0.03, 2), scale=float(rng.uniform(0.95, 1.05)),
                 angle=float(np.radians(rng.uniform(-3, 3))), gain=rng.uniform(0.9, 1.1, 3),
                 bias=rng.uniform(-8, 8, 3), detail=float(rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)),
                 radius=rng.uniform(0.85, 1.05, 2), feather=float(rng.uniform(0.03, 0.06)),
                 alpha=float(rng.uniform(0.7, 0.95)))


def jitter(base: Blend, rng: np.random.Generator) -> Blend:
    """This frame's parameters: the clip's base plus small independent noise (the temporal flicker)."""
    return Blend(shift=base.shift + rng.normal(0, 0.006, 2), scale=base.scale + rng.normal(0, 0.01),
                 angle=base.angle + np.radians(rng.normal(0, 0.5)), gain=base.gain + rng.normal(0, 0.015, 3),
                 bias=base.bias + rng.normal(0, 2, 3), detail=base.detail + rng.normal(0, 0.15),
                 radius=base.radius + rng.normal(0, 0.03, 2),
                 feather=float(np.clip(base.feather + rng.normal(0, 0.008), 0.015, 0.08)),
                 alpha=float(np.clip(base.alpha + rng.normal(0, 0.08), 0.3, 1.0)))


def self_blend(frame: np.ndarray, matrix: np.ndarray, face: tuple[float, ...], box: np.ndarray,
               p: Blend) -> np.ndarray:
    """Blend a warped, colour-shifted copy of ``frame`` (H, W, 3) float32 into its face; same shape out.

    ``matrix`` maps frame to photo coordinates: the mask is the photo face box's inscribed ellipse (so it rolls
    with the camera), eroded or dilated by ``p.radius`` and feathered by a Gaussian.
    """
    size_hw = frame.shape[:2]
    centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2
    face_h = float(box[3] - box[1])
    # source copy: output q reads the frame at centre + R(angle) (q - centre - shift) / scale
    src = _warp(frame, _affine(_rotation(p.angle, 1 / p.scale), centre, centre + p.shift * face_h), size_hw)
    src = src * p.gain + p.bias
    src = src + p.detail * (src - ndimage.gaussian_filter(src, (1.0, 1.0, 0)))
    v, u = np.mgrid[0:size_hw[0], 0:size_hw[1]].astype(np.float32)
    xs, ys = (matrix[r, 0] * u + matrix[r, 1] * v + matrix[r, 2] for r in (0, 1))   # photo coordinates
    x0, y0, x1, y1 = face
    ell = (((xs - (x0 + x1) / 2) / ((x1 - x0) / 2 * p.radius[0])) ** 2
           + ((ys - (y0 + y1) / 2) / ((y1 - y0) / 2 * p.radius[1])) ** 2)
    mask = ndimage.gaussian_filter((ell <= 1).astype(np.float32), p.feather * face_h) * p.alpha  # (H, W)
    return frame + mask[..., None] * (src - frame)


# ---------------------------------------------------------------- clips -------------------------------------
@dataclass(frozen=True)
class Pair:
    identity: str
    real: np.ndarray         # (T, H, W, 3) uint8 RGB
    fake: np.ndarray | None  # (T, H, W, 3) uint8 RGB, None when the source only yields a real clip
    boxes: np.ndarray        # (T, 4) float32 xyxy face box in frame pixels (the same in real and fake)


def _uint8(frame: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def render_source(cfg: SampleConfig, k: int, with_fake: bool = True) -> Pair:
    """Source ``k``: photo k mod 2 (mirrored on every other round), its own camera, one real + one fake."""
    index, flip = k % len(PHOTOS), (k // len(PHOTOS)) % 2 == 1
    img, face = photo_pixels(index, flip)
    cam_rng = np.random.default_rng([cfg.seed, k, 0])     # camera, lighting, noise: shared by the pair
    blend_rng = np.random.default_rng([cfg.seed, k, 1])   # the manipulation only: the real never sees it
    cam, base = draw_camera(cam_rng, cfg.frames, cfg.fps), draw_blend(blend_rng)
    shape = (cfg.frames, cfg.height, cfg.width, 3)
    real = np.empty(shape, np.uint8)
    fake = np.empty(shape, np.uint8) if with_fake else None
    boxes = np.empty((cfg.frames, 4), np.float32)
    for i in range(cfg.frames):
        matrix, boxes[i] = view(cam, i, face, img.shape[:2], shape[1:3], cfg.face_frac)
        frame = film(img, cam, i, matrix, shape[1:3], cam_rng)
        real[i] = _uint8(frame)
        if fake is not None:
            fake[i] = _uint8(self_blend(frame, matrix, face, boxes[i], jitter(base, blend_rng)))
    return Pair(PHOTOS[index].name, real, fake, boxes)


def encode(frames: np.ndarray, path: Path, fps: int, crf: int) -> None:
    """(T, H, W, 3) uint8 RGB -> H.264 yuv420p mp4 with byte-identical output for identical frames."""
    _, h, w, _ = frames.shape
    # one encoder thread and bitexact muxing: no thread-timing or version-string differences between runs
    with replacing(path) as tmp:
        cmd = (ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=fps)
               .output(str(tmp), vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset="medium", threads=1,
                       map_metadata=-1, fflags="+bitexact", **{"flags:v": "+bitexact"})
               .global_args("-hide_banner", "-nostdin", "-loglevel", "error").overwrite_output()
               .compile(cmd=ffmpeg_exe()))
        res = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if res.returncode != 0:
            err = res.stderr.decode("utf-8", errors="replace").strip() or f"exit code {res.returncode}"
            raise SampleError(f"ffmpeg could not encode {path}: {err}")


def _prepare(out: Path) -> None:
    """Create OUT, or clear the clips of an earlier sample there; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise SampleError(f"OUT {out} is a file; give a folder to create (or an earlier sample's folder)")
    if out.is_dir() and any(out.iterdir()):
        if not ((out / "sample_config.json").is_file() or (out / "manifest.csv").is_file()):
            raise SampleError(f"OUT {out} is a non-empty folder that holds no earlier sample; "
                              "choose a new or empty folder")
        for old in [*out.glob("real/src*_real.mp4"), *out.glob("fake/src*_fake.mp4"), out / "manifest.csv"]:
            old.unlink(missing_ok=True)
    try:
        for sub in ("real", "fake"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SampleError(f"cannot create OUT {out}: {exc.strerror or exc}") from exc


def write_manifest(rows: list[dict[str, str]], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r["video_id"]))
    return write_text(path, buf.getvalue())


def run(cfg: SampleConfig, progress: Progress = SILENT) -> Path:
    """Write OUT/real/*.mp4, OUT/fake/*.mp4, OUT/manifest.csv and OUT/sample_config.json; return OUT."""
    out = Path(cfg.out)
    _prepare(out)
    save(cfg, out / "sample_config.json")
    rows: list[dict[str, str]] = []
    sources = (cfg.videos + 1) // 2                      # odd N: the last source gives only its real clip
    progress.start("sample clips", total=cfg.videos, frames=0)
    frames_done = 0
    for k in range(sources):
        pair = render_source(cfg, k, with_fake=2 * k + 1 < cfg.videos)
        clips = [("real", pair.real)] + ([("fake", pair.fake)] if pair.fake is not None else [])
        for label, frames in clips:
            rel = f"{label}/src{k:03d}_{label}.mp4"
            encode(frames, out / rel, cfg.fps, cfg.crf)
            rows.append({"video_id": rel, "path": rel, "label": label, "group": f"src{k:03d}",
                         "identity": pair.identity,
                         "sha256": hashlib.sha256((out / rel).read_bytes()).hexdigest()})
            frames_done += len(frames)
            progress.update("sample clips", advance=1, frames=frames_done)
    write_manifest(rows, out / "manifest.csv")
    log.debug("wrote %d clips from %d sources to %s", len(rows), sources, out)
    return out
