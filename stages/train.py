"""Stage two: train ensemble members on the feature store (never on video).

Reads like a recipe, as torchvision's reference scripts do: data (``stages.train_data``), model
(``ensembles``), AdamW, a learning-rate schedule, then ``train_one_epoch`` and ``evaluate`` per epoch, with
early stopping, atomic checkpoints and a history row per epoch. ``stages.train_ensemble`` runs this for every
member of a run and writes the run's predictions.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ensembles.checkpoint import load_checkpoint, save_checkpoint
from ensembles.compare import StatsError, auc
from ensembles.ensemble import Member, MemberSpec, build_member, member_outputs
from ensembles.run_folder import RunFolder, trained_identity
from pipeline.core.config import ConfigError, differences, field, to_dict
from pipeline.core.device import resolve_device
from pipeline.core.errors import PipelineError
from pipeline.core.progress import SILENT, Progress
from stages.train_data import SplitData, TrainingData, augment, batches, class_weights
from stages.train_schedule import EarlyStopping, Schedule

log = logging.getLogger(__name__)
_KILL_ENV = "PIPELINE_TEST_KILL_TRAIN"   # test-only: "MEMBER:EPOCH" SIGKILLs training after that epoch
SMALL_HEAD = 1_000_000                    # parameters below which a member trains on one CPU thread


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(30, "most epochs per member (early stopping usually ends sooner)")
    batch_size: int = field(32, "videos per training batch")
    lr: float = field(1e-4, "AdamW learning rate")
    weight_decay: float = field(0.01, "AdamW weight decay")
    clip_norm: float = field(1.0, "clip the gradient norm to this (0: no clipping)")
    schedule: str = field("cosine", "learning-rate schedule: cosine (per step, to 1% of LR), plateau (halve "
                          "when MONITOR stalls), constant", choices=("cosine", "plateau", "constant"))
    monitor: str = field("val_loss", "early stopping and best checkpoint on this validation metric "
                         "(train_loss when there is no validation split)", choices=("val_loss", "val_auc"))
    patience: int = field(5, "stop a member after this many epochs without improvement")
    class_weights: bool = field(True, "weight the loss by inverse class frequency of the training split")
    frame_dropout: float = field(0.0, "augmentation: mask out each valid frame with this probability")
    temporal_jitter: int = field(0, "augmentation: move each frame slot by up to this many frames, in order")
    standardize: bool = field(True, "standardise each feature with mean/std fitted on the training split")
    device: str = field("auto", "auto (CUDA when available), cpu, cuda or cuda:N", identity=False)
    deterministic: bool = field(True, "deterministic algorithms (same seed -> same history)")
    threads: int = field(0, "CPU threads for torch; 0: one for heads under a million parameters (faster, "
                         "above all on a busy machine), torch's default for larger ones", identity=False)
    max_memory_gb: float = field(4.0, "hold the store's features in memory up to this size, else stream them",
                                 identity=False)
    checkpoint_interval: float = field(30.0, "seconds between last.pt writes (always at the end; 0: every epoch)",
                                       identity=False)
    eval_batch_size: int = field(256, "videos per batch when evaluating", identity=False)

    def validate(self) -> None:
        bad = [n for n in ("epochs", "batch_size", "eval_batch_size") if getattr(self, n) < 1]
        bad += [n for n in ("lr", "weight_decay", "clip_norm", "checkpoint_interval", "max_memory_gb")
                if getattr(self, n) < 0]
        bad += ["frame_dropout"] if not 0 <= self.frame_dropout < 1 else []
        bad += ["temporal_jitter"] if self.temporal_jitter < 0 else []
        bad += ["patience"] if self.patience < 1 else []
        bad += ["threads"] if self.threads < 0 else []
        if bad:
            raise ConfigError(f"train option(s) out of range: {', '.join(f'{n}={getattr(self, n)}' for n in bad)}")


@dataclass
class Stats:
    loss: float
    auc: float
    acc: float


@dataclass
class MemberResult:
    spec: MemberSpec
    model: Member          # best epoch's weights, eval mode
    history: list[dict]
    best_epoch: int
    monitor: str
    seconds: float
    params: int


@contextlib.contextmanager
def torch_settings(deterministic: bool, threads: int):
    """Deterministic kernels and a thread count while training; the caller's settings come back after.
    warn_only: CUDA's RNN kernels have no deterministic mode unless CUBLAS_WORKSPACE_CONFIG is set."""
    before, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    n_before = torch.get_num_threads()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)
        torch.set_num_threads(n_before)


def seed_all(seed: int) -> tuple[np.random.Generator, torch.Generator]:
    """Seed python, numpy and torch; return the generators that shuffle and augment."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed), torch.Generator().manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """Each epoch is seeded on its own, so a run resumed at epoch k replays exactly what k+1.. would have."""
    return seed * 1_000_003 + epoch


def _to_device(x: np.ndarray, mask: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True).float(),
            torch.from_numpy(np.ascontiguousarray(mask)).to(device))


def metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC (NaN when one class is missing) and accuracy at ``threshold``; NaN for no videos."""
    if len(labels) == 0:
        return {"auc": math.nan, "acc": math.nan}
    try:
        a = auc(labels, probs)
    except StatsError:
        a = math.nan
    return {"auc": a, "acc": float(np.mean((probs >= threshold) == (labels == 1)))}


def train_one_epoch(model: Member, split: SplitData, batch_list: list[np.ndarray], optimizer, criterion,
                    cfg: TrainConfig, device: torch.device, schedule: Schedule, step: int,
                    gen: torch.Generator) -> tuple[Stats, int]:
    """One pass over the training batches; metrics come from the training forward passes themselves."""
    model.train()
    total, probs, labels = 0.0, [], []
    for idx in batch_list:
        x, mask = _to_device(*split.fetch(idx), device)          # (B, T, D) float32, (B, T) bool
        x, mask = augment(x, mask, cfg.frame_dropout, cfg.temporal_jitter, gen)
        y = torch.from_numpy(split.labels[idx]).to(device)       # (B,)
        for group in optimizer.param_groups:
            group["lr"] = schedule.at(step)
        logits = model(x, mask)                                  # (B, 2)
        loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        optimizer.step()
        step += 1
        total += loss.item() * len(idx)
        probs.append(logits.detach().double().softmax(-1)[:, 1].cpu().numpy())
        labels.append(split.labels[idx])
    m = metrics(np.concatenate(labels), np.concatenate(probs))
    return Stats(total / sum(len(i) for i in batch_list), m["auc"], m["acc"]), step


def split_outputs(model: Member, split: SplitData, device: torch.device, batch_size: int,
                  attention: bool = False, frames: bool = False) -> torch.Tensor:
    """Logits (N, 2) (or attention (N, T), or frame logits (N, T, 2)) for every video of a split, reading it
    block by block."""
    outs = []
    for start in range(0, len(split), batch_size):
        x, mask = split.fetch(np.arange(start, min(start + batch_size, len(split))))
        outs.append(member_outputs(model, x, mask, device, batch_size, attention=attention, frames=frames))
    return torch.cat(outs) if outs else torch.zeros((0, 2))


@torch.no_grad()
def evaluate(model: Member, split: SplitData, criterion, device: torch.device, batch_size: int) -> Stats:
    """Loss, AUC and accuracy on the split's videos that have a face (the others carry no evidence)."""
    keep = split.has_frames
    logits = split_outputs(model, split, device, batch_size)[keep]
    labels = split.labels[keep]
    loss = criterion(logits.to(device), torch.from_numpy(labels).to(device)).item() if len(labels) else math.nan
    m = metrics(labels, logits.double().softmax(-1)[:, 1].numpy())
    return Stats(loss, m["auc"], m["acc"])


def choose_monitor(cfg: TrainConfig, data: TrainingData) -> str:
    val = data.splits["val"]
    labels = set(val.labels[val.has_frames].tolist())
    if not labels:
        log.warning("no validation videos with a face: early stopping and the best checkpoint follow the "
                    "training loss, and the threshold stays 0.5")
        return "train_loss"
    if cfg.monitor == "val_auc" and labels != {0, 1}:
        log.warning("validation holds one class only, so its AUC is undefined: monitoring val_loss instead")
        return "val_loss"
    return cfg.monitor


def _maybe_kill(name: str, epoch: int) -> None:
    if os.environ.get(_KILL_ENV) == f"{name}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


def _state(model: Member) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def fit_member(spec: MemberSpec, data: TrainingData, standardisation: tuple[np.ndarray, np.ndarray],
               cfg: TrainConfig, run: RunFolder, resume: bool, progress: Progress = SILENT) -> MemberResult:
    """Train one member (or continue it from last.pt) and return it with its best epoch's weights."""
    device = resolve_device(cfg.device)
    member_dir = run.member_dir(spec.name)
    member_dir.mkdir(parents=True, exist_ok=True)
    monitor = choose_monitor(cfg, data)
    higher = monitor == "val_auc"
    train, val = data.splits["train"], data.splits["val"]
    train_idx = data.training_rows()
    steps = len(batches(train_idx, cfg.batch_size, np.random.default_rng(0)))
    seed_all(spec.seed)
    model = build_member(spec, data.dim)
    params = sum(p.numel() for p in model.head.parameters())
    # Small heads run tiny kernels: a second thread only adds synchronisation (and on a shared 2-core
    # machine, spinning against other jobs: 10x slower was measured for a 5k-parameter head).
    threads = cfg.threads or (1 if params < SMALL_HEAD else 0)
    with torch_settings(cfg.deterministic, threads):
        model.set_standardisation(*standardisation)
        model.to(device)
        weight = class_weights(train.labels[train_idx]) if cfg.class_weights else None
        criterion = nn.CrossEntropyLoss(weight=weight.to(device) if weight is not None else None)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      fused=device.type in ("cpu", "cuda"))
        schedule = Schedule(cfg.schedule, cfg.lr, cfg.epochs * steps, max(1, cfg.patience // 2), higher)
        stop = EarlyStopping(cfg.patience, higher)
        common = {"member": spec.to_dict(), "train_config": to_dict(cfg), "store": data.provenance,
                  "store_identity": data.identity, "data_sha256": data.fingerprint, "monitor": monitor}
        history, epoch, finished, seconds, best_state = [], 0, False, 0.0, None
        last_path, best_path = run.checkpoint(spec.name, "last"), run.checkpoint(spec.name, "best")
        if last_path.is_file():
            if not resume:
                raise PipelineError(f"{member_dir} already holds a training of member {spec.name}; pass "
                                    f"--resume to continue it, or use another RUN or member name")
            ckpt = load_checkpoint(last_path, map_location=device)
            diff = differences(trained_identity(ckpt), data.identity)
            if ckpt["member"] != spec.to_dict() or diff:
                raise PipelineError(f"{last_path} was trained as {ckpt['member']} on another store or member "
                                    f"config ({'; '.join(diff) or 'member differs'}); cannot resume it")
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            schedule.state, stop.state = dict(ckpt["schedule"]), dict(ckpt["early_stopping"])
            history, epoch, finished, seconds = list(ckpt["history"]), ckpt["epoch"], ckpt["finished"], ckpt["seconds"]
            best_state = load_checkpoint(best_path)["model"] if best_path.is_file() else _state(model)
            run.write_history(spec.name, history)
            log.info("member %s: resuming after epoch %d%s", spec.name, epoch, " (already finished)" * finished)
        progress.start(spec.name, total=cfg.epochs, completed=epoch, status="")
        best_dirty, saved_at, started = False, time.monotonic(), time.monotonic()
        while not finished and epoch < cfg.epochs:
            epoch += 1
            rng, gen = seed_all(epoch_seed(spec.seed, epoch))
            tr, step = train_one_epoch(model, train, batches(train_idx, cfg.batch_size, rng), optimizer, criterion,
                                       cfg, device, schedule, (epoch - 1) * steps, gen)
            va = evaluate(model, val, criterion, device, cfg.eval_batch_size) if monitor != "train_loss" else None
            row = {"epoch": epoch, "train_loss": tr.loss, "train_auc": tr.auc, "train_acc": tr.acc,
                   "val_loss": va.loss if va else math.nan, "val_auc": va.auc if va else math.nan,
                   "val_acc": va.acc if va else math.nan, "lr": schedule.at(step - 1)}
            history.append(row)
            if stop.update(row[monitor], epoch) or best_state is None:
                best_state, best_dirty = _state(model), True
            schedule.after_epoch(row[monitor])
            finished = stop.stop or epoch >= cfg.epochs
            run.write_history(spec.name, history)
            if finished or time.monotonic() - saved_at >= cfg.checkpoint_interval:
                elapsed = seconds + time.monotonic() - started
                if best_dirty:   # best.pt first, so last.pt never points at a best epoch not on disk
                    save_checkpoint(best_path, {**common, "epoch": stop.state["best_epoch"] or epoch,
                                                "model": best_state, "seconds": elapsed})
                    best_dirty = False
                save_checkpoint(last_path, {**common, "epoch": epoch, "model": model.state_dict(),
                                            "optimizer": optimizer.state_dict(), "schedule": schedule.state,
                                            "early_stopping": stop.state, "history": history,
                                            "finished": finished, "seconds": elapsed})
                saved_at = time.monotonic()
            _maybe_kill(spec.name, epoch)
            progress.update(spec.name, completed=epoch, status=f"loss {tr.loss:.3f} {monitor} {row[monitor]:.3f}")
        seconds += time.monotonic() - started
        progress.update(spec.name, completed=cfg.epochs, status=f"best epoch {stop.state['best_epoch']}")
        model.load_state_dict(best_state)
        model.eval()
    return MemberResult(spec, model, history, stop.state["best_epoch"] or epoch, monitor, seconds, params)
