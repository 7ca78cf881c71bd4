"""ResNet50 frame embedder: face crops (N, C, C, 3) uint8 -> features (N, 2048) float16.

Weights: ``imagenet`` (torchvision's IMAGENET1K_V2 from the torch hub cache, downloaded if online),
``PATH`` (a local state dict), ``random`` (explicit random init, seeded, never called pretrained) or ``auto``
(ImageNet if loadable, else random with a loud warning that the store and every report repeat).
The fingerprint of whatever weights were loaded (sha256 over the state dict) goes into the store.

Speed: channels_last always; bf16 autocast on CUDA, and on a CPU only when it has native bf16 support and a
short timed probe shows bf16 is faster (it is ~1.8x faster on AVX-512-bf16 CPUs and ~7x slower on AVX2-only
ones; see ../shared performance notes). The choice and the probe's timings are recorded.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_DIM = 2048
RANDOM_SEED = 0
MIN_BATCH = 8


class WeightsError(PipelineError):
    """Backbone weights that cannot be loaded; the message says where to put them."""


@dataclass(frozen=True)
class WeightsInfo:
    name: str          # "imagenet:IMAGENET1K_V2" | "random:seed0" | "file:<path>"
    sha256: str        # fingerprint of the loaded state dict (classifier excluded)
    random: bool       # True when the features come from random weights: never to be called pretrained
    source: str        # where they came from


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        if key.startswith("fc."):
            continue
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def imagenet_cache_path() -> Path:
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _imagenet_state(download: bool) -> dict[str, torch.Tensor]:
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    cached = imagenet_cache_path()
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    if download:
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)   # an offline machine must fail fast, not hang
        try:
            return weights.get_state_dict(progress=False)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            log.debug("download failed: %s", exc)
        finally:
            socket.setdefaulttimeout(old)
    raise WeightsError(
        f"ImageNet ResNet50 weights not found at {cached} and could not be downloaded. On a machine with "
        f"internet run `make weights` (or download {weights.url}) and copy the file to {cached}; or pass "
        "--weights PATH to a local state dict, or --weights random for an explicit random backbone")


def _file_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"--weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad or unsafe file
        raise WeightsError(f"--weights {path}: not a loadable state dict ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"--weights {path}: expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_resnet50(weights: str = "imagenet", download: bool = True) -> tuple[torch.nn.Module, WeightsInfo]:
    """ResNet50 with the classifier replaced by identity, in eval mode, and what weights it holds."""
    model = torchvision.models.resnet50(weights=None)
    if weights in ("imagenet", "auto"):
        try:
            state = _imagenet_state(download)
            info_name, source, random = "imagenet:IMAGENET1K_V2", str(imagenet_cache_path()), False
        except WeightsError as exc:
            if weights == "imagenet":
                raise
            log.warning("RANDOM BACKBONE WEIGHTS: %s. Features from random weights are for testing the "
                        "pipeline only; results are not meaningful.", exc)
            state, info_name, source, random = None, f"random:seed{RANDOM_SEED}", "torch.manual_seed", True
    elif weights == "random":
        state, info_name, source, random = None, f"random:seed{RANDOM_SEED}", "torch.manual_seed", True
    else:
        path = Path(weights).expanduser()
        state, info_name, source, random = _file_state(path), f"file:{path.name}", str(path.resolve()), False
    if state is None:
        torch.manual_seed(RANDOM_SEED)            # the same random backbone every time: stores stay comparable
        model = torchvision.models.resnet50(weights=None)
    else:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise WeightsError(f"weights {source} do not fit ResNet50: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
    sha = state_dict_sha256(model.state_dict())
    model.fc = torch.nn.Identity()
    return model.eval(), WeightsInfo(info_name, sha, random, source)


def has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


class Embedder:
    """Batched, channels_last ResNet50 inference; one code path for CPU and CUDA."""

    def __init__(self, weights: str = "imagenet", device: str = "auto", precision: str = "auto",
                 batch_size: int = 32, crop: int = 224):
        self.device = resolve_device(device)
        model, self.weights = load_resnet50(weights)
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.batch_size = batch_size
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255
        self._mean, self._std = mean, std
        self.probe: dict = {}
        self.precision = self._choose_precision(precision, crop)

    # ---- precision ----------------------------------------------------------------------------------------
    def _autocast(self, precision: str):
        if precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _choose_precision(self, precision: str, crop: int) -> str:
        if precision != "auto":
            return precision
        if self.device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if not has_native_bf16():
            self.probe = {"reason": "no native bf16 on this CPU (avx512_bf16/amx absent): fp32"}
            return "fp32"
        # Timed probe: bf16 autocast only where it is really faster here.
        x = np.random.default_rng(0).integers(0, 255, (8, crop, crop, 3), dtype=np.uint8)
        times = {}
        for p in ("fp32", "bf16"):
            self._forward(x, p)                      # warm-up
            t0 = time.perf_counter()
            self._forward(x, p)
            times[p] = time.perf_counter() - t0
        choice = "bf16" if times["bf16"] < 0.9 * times["fp32"] else "fp32"
        self.probe = {"reason": "timed probe, batch 8", "seconds": {k: round(v, 4) for k, v in times.items()}}
        return choice

    def describe(self) -> dict:
        return {"device": self.device.type, "precision": self.precision, "channels_last": True,
                "batch_size": self.batch_size, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads(), "probe": self.probe}

    # ---- inference ----------------------------------------------------------------------------------------
    def _forward(self, crops: np.ndarray, precision: str) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device, non_blocking=True)  # (N, C, C, 3)
        x = x.permute(0, 3, 1, 2).float()                                 # (N, 3, C, C), channels_last
        x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast(precision):
            return self.model(x).float()                                  # (N, 2048)

    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """Normalised (N, 3, C, C) input as the model sees it (used by explanations)."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2).float()
        return ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, C, C, 3) uint8 -> (N, 2048) float16.

        A crop's features must not depend on which batch it lands in (``predict`` must reproduce the store
        bit for bit). oneDNN picks another convolution algorithm for a batch of one, whose fp32 results
        differ in the last bits, so short chunks are padded to MIN_BATCH images (measured: batches of 2 and
        more agree exactly with each other; the test suite checks predict against the store)."""
        out = np.empty((len(crops), FEATURE_DIM), dtype=np.float16)
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            n = len(chunk)
            if n < MIN_BATCH:
                chunk = np.concatenate([chunk, np.zeros((MIN_BATCH - n, *chunk.shape[1:]), chunk.dtype)])
            out[start:start + n] = self._forward(chunk, self.precision)[:n].cpu().numpy()
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description="Fetch torchvision's ImageNet ResNet50 into the torch hub cache")
    parser.add_argument("--fetch", action="store_true", help="download IMAGENET1K_V2 now (needs internet)")
    args = parser.parse_args()
    if not args.fetch:
        parser.print_help()
        return 0
    try:
        _, info = load_resnet50("imagenet", download=True)
    except WeightsError as exc:
        print(f"error: {exc}")
        return 2
    print(f"ok: {info.name} sha256={info.sha256[:16]}... at {imagenet_cache_path()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
