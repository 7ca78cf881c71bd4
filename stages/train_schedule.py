"""Learning-rate schedules and early stopping, with state that fits in a weights-only checkpoint."""
from __future__ import annotations

import math

MIN_LR_RATIO = 0.01                       # cosine schedule ends at 1% of the base learning rate
MIN_DELTA = 1e-4                          # an improvement smaller than this does not reset early stopping


class Schedule:
    """Learning rate per step: cosine over all steps, halving on plateau, or constant."""

    def __init__(self, kind: str, lr: float, total_steps: int, patience: int, higher_is_better: bool):
        self.kind, self.lr, self.total = kind, lr, max(total_steps, 1)
        self.patience, self.sign = patience, (1.0 if higher_is_better else -1.0)
        self.state = {"scale": 1.0, "best": -math.inf, "bad": 0}

    def at(self, step: int) -> float:
        lr = self.lr * self.state["scale"]
        if self.kind == "cosine":
            lr *= MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * min(step / self.total, 1.0)))
        return lr

    def after_epoch(self, value: float) -> None:
        if self.kind != "plateau" or math.isnan(value):
            return
        if self.sign * value > self.state["best"] + MIN_DELTA:
            self.state.update(best=self.sign * value, bad=0)
        else:
            self.state["bad"] += 1
            if self.state["bad"] > self.patience:
                self.state.update(scale=self.state["scale"] * 0.5, bad=0)


class EarlyStopping:
    def __init__(self, patience: int, higher_is_better: bool):
        self.patience, self.sign = patience, (1.0 if higher_is_better else -1.0)
        self.state = {"best": -math.inf, "best_epoch": 0, "bad": 0}

    def update(self, value: float, epoch: int) -> bool:
        """True when ``value`` is the best so far."""
        if not math.isnan(value) and self.sign * value > self.state["best"] + MIN_DELTA:
            self.state.update(best=self.sign * value, best_epoch=epoch, bad=0)
            return True
        self.state["bad"] += 1
        return False

    @property
    def stop(self) -> bool:
        return self.state["bad"] >= self.patience
