"""An ONNX bundle (what ``export RUN OUT/`` writes): the one module that names its files and reads them.

    OUT/manifest.json          format, the run's identity and provenance, members, threshold, each file's sha256
    OUT/backbone.onnx          crops (N, C, C, 3) uint8 -> features (N, 2048) float32, ImageNet normalisation
                               inside the graph (what ``stages.backbone.Embedder.preprocess`` does in torch)
    OUT/members/<name>.onnx    features (N, T, 2048) float32 + mask (N, T) bool -> logits (N, 2) [real, fake];
                               the member's standardisation inside, the mask honoured as the torch head does

``load_bundle`` gives what ``predict`` needs: a ``FramePipeline`` whose face detection is the torch one and whose
backbone runs in onnxruntime (``OnnxEmbedder``), and an ``OnnxEnsemble`` with ``Ensemble.predict``'s
interface. Every file's checksum is checked before it is loaded. The features go through float16, as the
store's do, so the heads see what they saw in training.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ensembles.ensemble import ENSEMBLE, RunModels, ensemble_mean, probabilities
from pipeline.core.atomic import write_json
from pipeline.core.errors import PipelineError
from pipeline.predict import check_identity, stage_one_configs
from stages.backbone import FEATURE_DIM, WeightsInfo
from stages.preprocess import FramePipeline

log = logging.getLogger(__name__)
FORMAT = "deepfake-ensemble-onnx"
VERSION = 1
MANIFEST = "manifest.json"
BACKBONE_FILE = "backbone.onnx"
INPUTS = {"backbone": ("crops",), "member": ("features", "mask")}
OUTPUTS = {"backbone": ("features",), "member": ("logits",)}


class BundleError(PipelineError):
    """A folder that is not a usable ONNX bundle; the message says what is missing or changed."""


def member_file(name: str) -> str:
    return f"members/{name}.onnx"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out: Path, manifest: dict) -> Path:
    """The manifest, last (its presence marks a complete bundle), with every listed file's sha256."""
    files = [manifest["backbone"], *manifest["members"]]
    for entry in files:
        entry["sha256"] = sha256_file(out / entry["file"])
        entry["bytes"] = (out / entry["file"]).stat().st_size
    return write_json(out / MANIFEST, {"format": FORMAT, "version": VERSION, **manifest})


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(out: str | Path, verify: bool = True) -> dict:
    """The bundle's manifest; with ``verify`` every file's checksum is checked (a changed file is an error)."""
    out = Path(out)
    path = out / MANIFEST
    if not path.is_file():
        hint = " (it is a training run: export it with `python -m pipeline export RUN OUT/`)" \
            if (out / "run.json").is_file() else ""
        raise BundleError(f"{out} is not an ONNX bundle: no {MANIFEST}{hint}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BundleError(f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}, "
                          f"expected {FORMAT!r} version {VERSION}")
    if verify:
        for entry in [manifest["backbone"], *manifest["members"]]:
            file = out / entry["file"]
            if not file.is_file():
                raise BundleError(f"{out}: {entry['file']} is missing")
            if sha256_file(file) != entry["sha256"]:
                raise BundleError(f"{out}: {entry['file']} does not match its sha256 in {MANIFEST} (changed "
                                  f"after export?); export the run again")
    return manifest


def session(path: Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BundleError("--runtime onnx needs onnxruntime: pip install -e '.[onnx]'") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads       # as many as torch uses: the same share of a shared machine
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _threads(threads: int | None) -> int:
    return threads or torch.get_num_threads()


class OnnxEmbedder:
    """The backbone in onnxruntime with ``stages.backbone.Embedder``'s interface: crops -> float16 features."""

    def __init__(self, out: Path, manifest: dict, batch_size: int = 64, threads: int | None = None):
        entry = manifest["backbone"]
        self.session = session(out / entry["file"], _threads(threads))
        self.device = torch.device("cpu")
        self.batch_size = batch_size
        self.weights = WeightsInfo(entry["weights"], entry["weights_sha256"], bool(entry["random_weights"]),
                                   f"onnx:{out / entry['file']}")

    def numerics(self) -> dict:
        return {"precision": "fp32", "runtime": "onnxruntime"}

    def describe(self) -> dict:
        import onnxruntime as ort
        return {"device": "cpu", "runtime": f"onnxruntime {ort.__version__}", **self.numerics(),
                "batch_size": self.batch_size, "threads": self.session.get_session_options().intra_op_num_threads}

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, C, C, 3) uint8 -> (N, 2048) float16, as the store holds them."""
        out = np.empty((len(crops), FEATURE_DIM), dtype=np.float16)
        for start in range(0, len(crops), self.batch_size):
            chunk = np.ascontiguousarray(crops[start:start + self.batch_size])
            out[start:start + len(chunk)] = self.session.run(None, {"crops": chunk})[0]
        return out


class OnnxMember:
    def __init__(self, path: Path, threads: int):
        self.session = session(path, threads)

    def logits(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"features": features.astype(np.float32), "mask": mask.astype(bool)})[0]


class OnnxEnsemble(RunModels):
    """The members in onnxruntime with ``ensembles.ensemble.Ensemble``'s predict interface."""

    def __init__(self, out: Path, manifest: dict, threads: int | None = None):
        self.info = {"store": manifest["store"], "threshold": manifest["threshold"], "members": manifest["members"]}
        self.members = {m["name"]: OnnxMember(out / m["file"], _threads(threads)) for m in manifest["members"]}
        self.in_ensemble = [m["name"] for m in manifest["members"] if m.get("in_ensemble", True)]

    def predict(self, features, mask, batch_size: int = 256) -> dict[str, np.ndarray]:
        """features (N, T, D), mask (N, T) -> {model: prob_fake (N,)} incl. "ensemble". As in
        ``member_outputs``, a video without a valid frame is not run: logits 0, probability 0.5."""
        features, mask = np.asarray(features), np.asarray(mask, dtype=bool)
        rows = np.flatnonzero(mask.any(1))
        out = {}
        for name, member in self.members.items():
            logits = np.zeros((len(mask), 2), np.float32)
            for start in range(0, len(rows), batch_size):
                idx = rows[start:start + batch_size]
                logits[idx] = member.logits(features[idx], mask[idx])
            out[name] = probabilities(torch.from_numpy(logits))
        out[ENSEMBLE] = ensemble_mean(out, self.in_ensemble)
        return out

    def attention(self, features, mask, batch_size: int = 256) -> dict[str, np.ndarray]:
        return {}      # the bundle's graphs give logits only


def load_bundle(out: str | Path, device: str = "cpu", threads: int | None = None):
    """(FramePipeline with the ONNX backbone, OnnxEnsemble) for ``predict --runtime onnx``."""
    out = Path(out)
    manifest = read_manifest(out)
    identity = manifest["store_identity"]
    cfg, faces = stage_one_configs(manifest["store"], identity, device)
    embedder = OnnxEmbedder(out, manifest, cfg.batch_size, threads)
    pipe = check_identity(identity, FramePipeline(cfg, faces, embedder=embedder),
                          keys=[k for k in identity if k != "backbone_numerics"])
    precision = (identity.get("backbone_numerics") or {}).get("precision", "fp32")
    if precision != "fp32":
        log.warning("the run's store was embedded with %s autocast; the ONNX backbone computes in fp32, so "
                    "features differ by %s rounding and a verdict within about 0.01 of the threshold may differ",
                    precision, precision)
    return pipe, OnnxEnsemble(out, manifest, threads)
