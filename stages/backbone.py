"""ResNet50 frame embedder: face crops (N, C, C, 3) uint8 -> features (N, 2048) float16.

The network is torchvision's ResNet50, defined in ``stages.resnet`` (same state dict, arithmetic and seeded
initialisation, without torchvision's 1.4 s import). Weights: ``imagenet`` (torchvision's IMAGENET1K_V2 from
the torch hub cache, or fetched through torchvision's weights enum if online),
``PATH`` (a local state dict), ``random`` (explicit random init, seeded, never called pretrained) or ``auto``
(ImageNet if loadable, else random with a loud warning that the store and every report repeat).
The fingerprint of whatever weights were loaded (sha256 over the state dict) goes into the store.

Numeric engine: channels_last always; the precision is chosen from the machine's capability, the same way
every time: bf16 autocast on CUDA (fp16 where bf16 is unsupported) and on CPUs with native bf16
(``avx512_bf16`` / AMX: ~1.8x faster there), fp32 elsewhere (bf16 was ~7x *slower* on an AVX2-only CPU; see
the project's performance notes). ``--precision probe`` times both instead, once per machine and torch
version, and caches the answer. Features of one store come from one engine: the precision is part of the
store's identity (``numerics()``), so a resume that would mix engines is refused.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.core.atomic import write_json
from pipeline.core.device import resolve_device
from pipeline.core.errors import PipelineError
from stages.resnet import ResNet50

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


# torchvision's ResNet50_Weights.IMAGENET1K_V2.url (tests/test_backbone_resnet.py checks it against the enum)
IMAGENET_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"


def imagenet_cache_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(IMAGENET_URL).name


def _imagenet_state(download: bool) -> dict[str, torch.Tensor]:
    cached = imagenet_cache_path()
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    if download:
        import torchvision      # only to fetch: its weights enum downloads and checks the file
        weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
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
        f"internet run `make weights` (or download {IMAGENET_URL}) and copy the file to {cached}; or pass "
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
        model = ResNet50()                        # (torchvision's resnet50 from this seed, bit for bit)
    else:
        with torch.device("meta"):                # no random init (0.35 s) for weights about to be replaced
            model = ResNet50()
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        except RuntimeError as exc:                # shapes that do not fit
            raise WeightsError(f"weights {source} do not fit ResNet50: {str(exc).splitlines()[-1].strip()}") from exc
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise WeightsError(f"weights {source} do not fit ResNet50: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
    sha = state_dict_sha256(model.state_dict())
    model.fc = torch.nn.Identity()
    return model.eval(), WeightsInfo(info_name, sha, random, source)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def has_native_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def capability_precision(device: torch.device) -> tuple[str, str]:
    """(precision, why) from what the device can do: no timing, so the same answer under any load."""
    if device.type == "cuda":
        return ("bf16", "CUDA with bf16") if torch.cuda.is_bf16_supported() else ("fp16", "CUDA without bf16")
    if has_native_bf16():
        return "bf16", "CPU with native bf16 (avx512_bf16/amx_bf16)"
    return "fp32", f"CPU without native bf16 (capability {torch.backends.cpu.get_cpu_capability()})"


def probe_cache_path(device: torch.device, crop: int) -> Path:
    """One cached probe result per machine (CPU model and flags, or GPU name), torch version and crop size."""
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
        machine = model + " " + " ".join(sorted(cpu_flags()))
    key = hashlib.sha256(f"{machine}|{torch.__version__}|{crop}|{os.cpu_count()}".encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deepfake-ensemble"
    return base / f"precision-probe-{key}.json"


class Embedder:
    """Batched, channels_last ResNet50 inference; one code path for CPU and CUDA.

    ``precision``: ``auto`` (from the capability, see the module docstring), ``probe`` (timed once per
    machine and cached), or ``fp32`` / ``bf16`` / ``fp16`` as given.
    """

    CHANNELS_LAST = True
    COMPILE = False

    def __init__(self, weights: str = "imagenet", device: str = "auto", precision: str = "auto",
                 batch_size: int = 32, crop: int = 224):
        self.device = resolve_device(device)
        model, self.weights = load_resnet50(weights)
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.batch_size = batch_size
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255
        self._mean, self._std = mean, std
        self.precision, self.choice = self._choose_precision(precision, crop)

    # ---- precision ----------------------------------------------------------------------------------------
    def _autocast(self, precision: str):
        if precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _choose_precision(self, precision: str, crop: int) -> tuple[str, dict]:
        if precision in ("fp32", "bf16", "fp16"):
            return precision, {"rule": "given (--precision)"}
        if precision == "auto":
            choice, why = capability_precision(self.device)
            return choice, {"rule": "capability", "reason": why}
        if precision != "probe":
            raise PipelineError(f"--precision {precision!r}: expected auto, probe, fp32, bf16 or fp16")
        cache = probe_cache_path(self.device, crop)
        try:
            found = json.loads(cache.read_text())
            return found["precision"], {**found, "rule": "probe (cached)", "cache": str(cache)}
        except (OSError, ValueError, KeyError):
            pass
        x = np.random.default_rng(0).integers(0, 255, (8, crop, crop, 3), dtype=np.uint8)
        times = {}
        for p in ("fp32", "bf16"):
            self._forward(x, p)                      # warm-up
            t0 = time.perf_counter()
            self._forward(x, p)
            times[p] = time.perf_counter() - t0
        found = {"precision": "bf16" if times["bf16"] < 0.9 * times["fp32"] else "fp32",
                 "seconds": {k: round(v, 4) for k, v in times.items()}, "batch": 8, "torch": torch.__version__}
        write_json(cache, found)
        return found["precision"], {**found, "rule": "probe (timed now, cached)", "cache": str(cache)}

    def numerics(self) -> dict:
        """The numeric engine: part of a store's identity (features from two engines never mix)."""
        return {"precision": self.precision, "channels_last": self.CHANNELS_LAST, "compile": self.COMPILE}

    def describe(self) -> dict:
        return {"device": self.device.type, **self.numerics(), "batch_size": self.batch_size,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                "choice": self.choice}

    # ---- inference ----------------------------------------------------------------------------------------
    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """(N, C, C, 3) uint8 -> normalised (N, 3, C, C) float, channels_last, on the device."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device, non_blocking=True)   # (N, C, C, 3)
        x = x.permute(0, 3, 1, 2).float()                                 # (N, 3, C, C), channels_last strides
        return ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    def _forward(self, crops: np.ndarray, precision: str) -> torch.Tensor:
        x = self.preprocess(crops)
        with torch.inference_mode(), self._autocast(precision):
            return self.model(x).float()                                  # (N, 2048)

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
