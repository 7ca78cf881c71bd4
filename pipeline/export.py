"""``export RUN OUT/``: the run's backbone and every member as ONNX models, checked against torch, and a
manifest (``pipeline.bundle`` names the files and reads them back).

- **Backbone**: ResNet50 without its classifier, exported in fp32 with the ImageNet normalisation *inside the
  graph*: it takes the face crops as the face stage cuts them, (N, C, C, 3) uint8 RGB, and does what
  ``Embedder.preprocess`` does in torch (NHWC -> NCHW, ``(x - 255 mean) / (255 std)``). C is the store's crop.
- **Members**: ``ensembles.ensemble.Member`` (the standardisation fitted on the training split, then the head),
  for sequences of the store's T frames and their mask. Recurrent heads are traced under
  ``ensembles.heads.masked.unrolled_rnn``: the packed sequence torch runs cannot be exported, so the graph
  runs the recurrence as a loop over the T steps whose state moves only at valid frames, which counts the
  same frames in the same order in both directions; masked frames never change an output.
- Every graph has a dynamic batch axis, and each is run in onnxruntime on inputs with masked frames
  (gaps, a short row, an empty row) and compared with torch before the manifest is written.

The exporter is torch's ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), opset 18.
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ensembles.heads.masked import unrolled_rnn
from ensembles.run_folder import load_run, trained_identity
from pipeline import bundle
from pipeline.core.atomic import replacing
from pipeline.core.errors import PipelineError
from pipeline.core.progress import SILENT, Progress
from pipeline.core.versions import package_versions
from pipeline.predict import pipeline_for_run
from stages.backbone import FEATURE_DIM, IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)
TASK = "export"
OPSET = 18
TOLERANCE = 1e-5        # largest probability difference onnxruntime may show against torch on the checks


class ExportError(PipelineError):
    """A model that could not be exported, or whose export does not compute what torch computes."""


class BackboneGraph(nn.Module):
    """crops (N, C, C, 3) uint8 -> features (N, 2048) float32, normalised inside."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops.permute(0, 3, 1, 2).float()                    # (N, 3, C, C)
        return self.model((x - self.mean) / self.std)            # (N, 2048)


class MemberGraph(nn.Module):
    """features (N, T, D) float32 + mask (N, T) bool -> logits (N, 2)."""

    def __init__(self, member: nn.Module):
        super().__init__()
        self.member = member

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.member(features, mask)


@contextlib.contextmanager
def _quiet():
    """The exporter's own chatter (prints, warnings on its internals, INFO logs of its optimiser) to debug."""
    chatter = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
            log.debug("exporter said: %s", chatter.getvalue().strip())


def to_onnx(module: nn.Module, example: tuple, path: Path, kind: str) -> Path:
    """Export ``module`` (eval mode, fp32, CPU) to ``path`` with a dynamic batch axis on every input."""
    names, outputs = bundle.INPUTS[kind], bundle.OUTPUTS[kind]
    batch = torch.export.Dim("batch", min=1)
    with replacing(path) as tmp, unrolled_rnn(), _quiet():
        try:
            torch.onnx.export(module.eval(), example, str(tmp), dynamo=True, input_names=list(names),
                              output_names=list(outputs), dynamic_shapes={n: {0: batch} for n in names},
                              opset_version=OPSET, external_data=False, verbose=False)
        except Exception as exc:                 # torch.export raises many types; the reason is what matters
            raise ExportError(f"{path.name}: ONNX export failed: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return path


def check_inputs(T: int, dim: int = FEATURE_DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features (6, T, D) at a store's scale and masks with gaps, a short row, one frame and no frame."""
    rng = np.random.default_rng(seed)
    feats = np.abs(rng.normal(0, 1, (6, T, dim))).astype(np.float16).astype(np.float32)
    mask = np.ones((6, T), bool)
    mask[1, 1::2] = False                          # every other frame missing
    mask[2, T // 2:] = False                       # a short video
    mask[3, :] = False
    mask[3, T - 1] = True                          # one face, at the end
    mask[4, :] = False                             # no face at all
    mask[5, 0] = False                             # the first frame missing
    return feats, mask


def _probs(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e[:, 1] / e.sum(1)


def verify_member(member: nn.Module, path: Path, T: int, dim: int = FEATURE_DIM) -> float:
    """Largest |P(fake) onnxruntime - P(fake) torch| over the check inputs; an error above TOLERANCE."""
    feats, mask = check_inputs(T, dim)
    with torch.no_grad():
        ref = member(torch.from_numpy(feats), torch.from_numpy(mask)).numpy()
    got = bundle.OnnxMember(path, torch.get_num_threads()).logits(feats, mask)
    worst = float(np.abs(_probs(got) - _probs(ref)).max())
    if not worst <= TOLERANCE:
        raise ExportError(f"{path.name}: onnxruntime differs from torch by {worst:.2g} in P(fake) on masked inputs")
    return worst


def verify_backbone(graph: BackboneGraph, path: Path, crop: int) -> float:
    """Largest relative difference of the features (onnxruntime vs torch) on random crops."""
    crops = np.random.default_rng(0).integers(0, 256, (3, crop, crop, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = graph(torch.from_numpy(crops)).numpy()
    got = bundle.session(path, torch.get_num_threads()).run(None, {"crops": crops})[0]
    worst = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))
    if not worst <= 1e-4:
        raise ExportError(f"{path.name}: onnxruntime features differ from torch by {worst:.2g} (relative)")
    return worst


def export_backbone(model: nn.Module, crop: int, path: Path) -> tuple[Path, float]:
    graph = BackboneGraph(model).float().cpu().eval()
    example = (torch.zeros(2, crop, crop, 3, dtype=torch.uint8),)
    to_onnx(graph, example, path, "backbone")
    return path, verify_backbone(graph, path, crop)


def export_member(member: nn.Module, T: int, path: Path, dim: int = FEATURE_DIM) -> tuple[Path, float]:
    graph = MemberGraph(member.float().cpu().eval())
    feats, mask = check_inputs(T, dim)
    to_onnx(graph, (torch.from_numpy(feats[:2]), torch.from_numpy(mask[:2])), path, "member")
    return path, verify_member(member, path, T, dim)


def export_run(run_dir: str | Path, out: str | Path, progress: Progress = SILENT) -> dict:
    """Write the bundle of ``run_dir`` into ``out``; returns the manifest."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not bundle.is_bundle(out))):
        raise ExportError(f"{out} exists and is not an ONNX bundle; give a new or empty folder (an earlier "
                          "bundle there is replaced)")
    ensemble = load_run(run_dir, device="cpu")
    identity = trained_identity(ensemble.info)
    pipe = pipeline_for_run(ensemble.store, identity, "cpu")     # the very weights the store was made with
    T, crop = int(identity["frames"]), int(identity["crop"])
    weights = pipe.embedder.weights
    progress.start(TASK, total=1 + len(ensemble.members))
    t0 = time.perf_counter()
    _, backbone_err = export_backbone(pipe.embedder.model, crop, out / bundle.BACKBONE_FILE)
    seconds = {bundle.BACKBONE_FILE: round(time.perf_counter() - t0, 1)}
    progress.update(TASK, advance=1, status=bundle.BACKBONE_FILE)
    specs = {m["name"]: m for m in ensemble.info["members"]}
    members = []
    for name, member in ensemble.members.items():
        t1 = time.perf_counter()
        _, err = export_member(member, T, out / bundle.member_file(name))
        spec = specs[name]
        members.append({"name": name, "head": spec.get("head"), "options": spec.get("options", {}),
                        "seed": spec.get("seed"), "in_ensemble": name in ensemble.in_ensemble,
                        "file": bundle.member_file(name), "max_prob_diff_vs_torch": err,
                        "export_seconds": round(time.perf_counter() - t1, 1),
                        "inputs": {"features": ["N", T, FEATURE_DIM], "mask": ["N", T]}, "outputs": {"logits": ["N", 2]}})
        progress.update(TASK, advance=1, status=name)
    info = ensemble.info
    manifest = {
        "run": {"path": str(run_dir.resolve()), "created": info.get("created"), "data": info.get("data")},
        "store": info["store"], "store_identity": identity,
        "threshold": ensemble.threshold, "threshold_method": info.get("threshold_method"),
        "frames": T, "crop": crop, "feature_dim": FEATURE_DIM, "opset": OPSET,
        "backbone": {"file": bundle.BACKBONE_FILE, "model": identity.get("backbone"), "weights": weights.name,
                     "weights_sha256": weights.sha256, "random_weights": weights.random,
                     "normalisation": "inside the graph: NHWC uint8 -> NCHW float, (x - 255*mean) / (255*std) with "
                                      f"ImageNet mean {list(IMAGENET_MEAN)} and std {list(IMAGENET_STD)}",
                     "precision": "fp32", "store_precision": (identity.get("backbone_numerics") or {}).get("precision"),
                     "max_rel_diff_vs_torch": backbone_err, "export_seconds": seconds[bundle.BACKBONE_FILE],
                     "inputs": {"crops": ["N", crop, crop, 3]}, "outputs": {"features": ["N", FEATURE_DIM]}},
        "members": members,
        "seconds": round(time.perf_counter() - t0, 1),
        "versions": package_versions("torch", "onnx", "onnxruntime", "onnxscript"),
    }
    bundle.write_manifest(out, manifest)
    for stale in set((out / "members").glob("*.onnx")) - {out / m["file"] for m in members}:
        stale.unlink()                               # a member of an earlier export into this folder
    return bundle.read_manifest(out)
