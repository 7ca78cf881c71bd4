"""The ensemble: members (a head, its options and seed), each wrapped with its standardisation, averaged.

An ensemble's prediction is the mean of its members' softmax outputs (``ensemble_mean``, the one place it is
computed). A trained run folder is loaded with ``ensembles.run_folder.load_run(run_dir, device)``; its
``predict`` takes raw store features, because each member carries the per-feature standardisation fitted on
the training split.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ensembles.checkpoint import CheckpointError, load_checkpoint
from ensembles.registry import HeadError, create_head, head_options
from pipeline.core.config import ConfigError, read_file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ENSEMBLE = "ensemble"      # the model name of the members' average in every predictions file


@dataclass(frozen=True)
class MemberSpec:
    name: str                     # folder under RUN/members/ and the model name in predictions.csv
    head: str                     # a registered head (ensembles.registry.list_heads())
    options: dict = field(default_factory=dict)   # head options; in_dim comes from the store
    seed: int = 0
    in_ensemble: bool = True      # averaged into "ensemble"; train-head adds members outside it by default

    def validate(self) -> "MemberSpec":
        if not _NAME.match(self.name) or self.name == "ensemble":
            raise ConfigError(f"member name {self.name!r}: use letters, digits, '.', '_' or '-' "
                              f"(at most 64, not 'ensemble')")
        try:
            known = head_options(self.head)
        except HeadError as exc:
            raise ConfigError(f"member {self.name!r}: {exc}") from exc
        unknown = sorted(set(self.options) - set(known) | ({"in_dim"} & set(self.options)))
        if unknown:
            raise ConfigError(f"member {self.name!r}: head {self.head!r} takes no option(s) {', '.join(unknown)} "
                              f"(in_dim comes from the store); options: "
                              f"{', '.join(k for k in known if k != 'in_dim')}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MemberSpec":
        try:
            return cls(str(d["name"]), str(d["head"]), dict(d.get("options") or {}), int(d.get("seed", 0)),
                       bool(d.get("in_ensemble", True))).validate()
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"member entry {d!r}: needs name, head, and optionally options, seed") from exc


@dataclass(frozen=True)
class EnsembleConfig:
    members: tuple[MemberSpec, ...]

    def validate(self) -> "EnsembleConfig":
        names = [m.name for m in self.members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"member names must be unique; repeated: {', '.join(dupes)}")
        if not any(m.in_ensemble for m in self.members):
            raise ConfigError("the ensemble needs at least one member with in_ensemble = true")
        return self


# The attention-ensemble seed (Bi-LSTM 768, Bi-LSTM 512, Bi-GRU 768) plus the two single-direction seeds.
DEFAULT_MEMBERS = (
    MemberSpec("bilstm-attn-768", "bilstm-attn", {"hidden": 768}, seed=0),
    MemberSpec("bilstm-attn-512", "bilstm-attn", {"hidden": 512}, seed=1),
    MemberSpec("bigru-attn-768", "bigru-attn", {"hidden": 768}, seed=2),
    MemberSpec("lstm", "lstm", {}, seed=3),
    MemberSpec("gru", "gru", {}, seed=4),
)


def read_ensemble_config(path: str | Path | None) -> EnsembleConfig:
    """``[[members]]`` tables of a TOML file (name, head, seed, options = {...}); the default without one."""
    data = read_file(path) if path is not None else {}
    entries = data.get("members")
    if entries is None:
        return EnsembleConfig(DEFAULT_MEMBERS).validate()
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: 'members' must be a non-empty array of tables ([[members]])")
    return EnsembleConfig(tuple(MemberSpec.from_dict(e) for e in entries)).validate()


def ensemble_mean(probs: dict[str, np.ndarray], members) -> np.ndarray:
    """The ensemble's prob_fake (N,): the mean of the listed members' prob_fake, in float64."""
    return np.mean([np.asarray(probs[m], dtype=np.float64) for m in members], axis=0)


class Member(nn.Module):
    """A head behind the per-feature standardisation fitted on the training split (saved in its buffers)."""

    def __init__(self, head: nn.Module, dim: int):
        super().__init__()
        self.head = head
        self.register_buffer("mean", torch.zeros(dim))   # (D,)
        self.register_buffer("std", torch.ones(dim))     # (D,)

    def set_standardisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def _standardise(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = (x.float() - self.mean) / self.std                    # (B, T, D)
        return torch.where(mask.unsqueeze(-1), z, torch.zeros((), device=z.device))   # padding: exact 0

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        return self.head(self._standardise(x, mask), mask)       # (B, 2)

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        if not hasattr(self.head, "attention"):
            return None
        mask = mask.bool()
        return self.head.attention(self._standardise(x, mask), mask)   # (B, T)

    @property
    def scores_frames(self) -> bool:
        return hasattr(self.head, "frame_logits")

    def frame_logits(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Per-frame logits (B, T, 2) of heads that score frames (``meanpool``, ``framelinear``), else None."""
        if not self.scores_frames:
            return None
        mask = mask.bool()
        return self.head.frame_logits(self._standardise(x, mask), mask)   # (B, T, 2)


def build_member(spec: MemberSpec, dim: int) -> Member:
    return Member(create_head(spec.head, in_dim=dim, **spec.options), dim)


@torch.no_grad()
def member_outputs(member: Member, features, mask, device: torch.device | str = "cpu", batch_size: int = 256,
                   attention: bool = False, frames: bool = False) -> torch.Tensor:
    """Logits (N, 2) on the CPU; attention weights (N, T) with ``attention``; per-frame logits (N, T, 2)
    with ``frames`` (NaN on masked frames, which have no score).

    Videos without a valid frame are never run through the model: their logits are 0 (probability 0.5).
    """
    features = torch.as_tensor(np.asarray(features)) if not torch.is_tensor(features) else features
    mask = torch.as_tensor(np.asarray(mask, dtype=bool)) if not torch.is_tensor(mask) else mask.bool()
    n, t = mask.shape
    out = torch.zeros((n, t) if attention else (n, t, 2) if frames else (n, 2), dtype=torch.float32)
    rows = torch.nonzero(mask.any(1)).squeeze(1)                  # videos with at least one face
    member.eval()
    for start in range(0, len(rows), batch_size):
        idx = rows[start:start + batch_size]
        x = features[idx].to(device, non_blocking=True)           # (b, T, D) raw store features
        m = mask[idx].to(device)
        res = member.attention(x, m) if attention else member.frame_logits(x, m) if frames else member(x, m)
        out[idx] = res.float().cpu()
    if frames:
        out[~mask] = float("nan")
    return out


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """(N, 2) logits -> (N,) probability of fake, float64; (N, T, 2) frame logits -> (N, T) (NaN stays NaN)."""
    return logits.double().softmax(-1)[..., 1].numpy()


class RunModels:
    """What every scorer of a run shares (torch here, onnxruntime in pipeline.bundle): ``info`` from run.json
    (or a bundle's manifest), the store identity it was trained on and its decision threshold."""
    info: dict

    @property
    def store(self) -> dict:
        return self.info["store"]

    @property
    def threshold(self) -> float:
        return float(self.info.get("threshold") or 0.5)


class Ensemble(RunModels):
    """Trained members of one run; ``predict`` gives every member's and the ensemble's prob_fake."""

    def __init__(self, members: dict[str, Member], in_ensemble: list[str], info: dict,
                 device: torch.device | str = "cpu"):
        self.members, self.in_ensemble, self.info = members, in_ensemble, info
        self.device = torch.device(device)

    def predict(self, features, mask, batch_size: int = 256) -> dict[str, np.ndarray]:
        """features (N, T, D) raw store features, mask (N, T) -> {model: prob_fake (N,)} incl. "ensemble"."""
        out = {name: probabilities(member_outputs(m, features, mask, self.device, batch_size))
               for name, m in self.members.items()}
        out[ENSEMBLE] = ensemble_mean(out, self.in_ensemble)
        return out

    def attention(self, features, mask, batch_size: int = 256) -> dict[str, np.ndarray]:
        """{member: per-frame attention weights (N, T)} for members with an attention head."""
        return {name: member_outputs(m, features, mask, self.device, batch_size, attention=True).numpy()
                for name, m in self.members.items() if hasattr(m.head, "attention")}

    def frames(self, features, mask, batch_size: int = 256) -> dict[str, np.ndarray]:
        """{member: per-frame prob_fake (N, T), NaN on masked frames} for members whose heads score frames.
        The ensemble has no frame-level score: most of its members judge whole sequences."""
        return {name: probabilities(member_outputs(m, features, mask, self.device, batch_size, frames=True))
                for name, m in self.members.items() if m.scores_frames}


def load_member(path: str | Path, device: torch.device | str = "cpu") -> tuple[MemberSpec, Member, dict]:
    """A member from its checkpoint (weights only: see ensembles.checkpoint)."""
    ckpt = load_checkpoint(path, map_location=device)
    try:
        spec = MemberSpec.from_dict(ckpt["member"])
        member = build_member(spec, int(ckpt["store"]["feature_dim"]))
        member.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not describe a usable member ({exc})") from exc
    return spec, member.to(device).eval(), ckpt


__all__ = ["DEFAULT_MEMBERS", "ENSEMBLE", "Ensemble", "EnsembleConfig", "Member", "MemberSpec", "build_member",
           "ensemble_mean", "load_member", "member_outputs", "probabilities", "read_ensemble_config"]
