"""Placing whole groups into splits so that each split's real and fake counts track its share.

Each unit is a group (or linked groups) with ``(n_real, n_fake)`` videos. The cost of an allocation is the
squared miss of every (split, label) count from its target ``weight * label total``, divided by that
label's total so a rare label is balanced as carefully as a common one. A greedy pass (largest units
first) gives a start; single moves and pairwise swaps then lower the cost until nothing helps. Greedy
alone can strand a split short of fakes once only small real groups are left; the swaps fix that.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

Counts = tuple[int, int]   # (real, fake) videos of a unit
_EPS = 1e-12


class Allocation:
    def __init__(self, units: Sequence[Counts], weights: dict[str, float],
                 base: dict[str, list[int]] | None = None) -> None:
        self.units = [tuple(u) for u in units]
        self.splits = list(weights)
        totals = [sum(u[l] for u in self.units) for l in (0, 1)]
        self.norm = [max(t, 1) for t in totals]
        self.target = {s: [w * totals[0], w * totals[1]] for s, w in weights.items()}
        self.count = {s: [0, 0] for s in self.splits}
        # Videos already in a split that this allocation must not move (only used for "has both labels").
        self.base = {s: list((base or {}).get(s, [0, 0])) for s in self.splits}
        self.where: list[str | None] = [None] * len(self.units)
        self.by_shape: dict[str, dict[Counts, list[int]]] = {s: defaultdict(list) for s in self.splits}

    # ---- cost ---------------------------------------------------------------------------------------------
    def _cost(self, s: str, counts: Sequence[float]) -> float:
        return sum((counts[l] - self.target[s][l]) ** 2 / self.norm[l] for l in (0, 1))

    def _delta(self, s: str, minus: Counts, plus: Counts) -> float:
        """Cost change of split ``s`` losing ``minus`` videos and gaining ``plus``."""
        c = self.count[s]
        after = (c[0] - minus[0] + plus[0], c[1] - minus[1] + plus[1])
        return self._cost(s, after) - self._cost(s, c)

    def _keeps_labels(self, s: str, minus: Counts, plus: Counts) -> bool:
        """A change may not take the last real (or fake) out of a split that had one."""
        for l in (0, 1):
            had = self.base[s][l] + self.count[s][l]
            if had > 0 and had - minus[l] + plus[l] <= 0:
                return False
        return True

    # ---- bookkeeping --------------------------------------------------------------------------------------
    def _put(self, i: int, s: str) -> None:
        old = self.where[i]
        u = self.units[i]
        if old is not None:
            self.count[old][0] -= u[0]
            self.count[old][1] -= u[1]
            self.by_shape[old][u].remove(i)
        self.where[i] = s
        self.count[s][0] += u[0]
        self.count[s][1] += u[1]
        self.by_shape[s][u].append(i)

    def has(self, s: str, label: int) -> bool:
        return self.base[s][label] + self.count[s][label] > 0

    # ---- passes -------------------------------------------------------------------------------------------
    def greedy(self) -> None:
        """Units in the given order (callers pass largest first), each where the cost rises least."""
        for i, u in enumerate(self.units):
            room = {s: sum(self.target[s]) - sum(self.count[s]) for s in self.splits}
            best = min(self.splits, key=lambda s: (self._delta(s, (0, 0), u), -room[s], self.splits.index(s)))
            self._put(i, best)

    def _best_change(self, i: int) -> tuple[float, str | None, int | None]:
        """Best move of unit ``i`` to another split, or swap with a unit of another shape there."""
        s, u = self.where[i], self.units[i]
        best: tuple[float, str | None, int | None] = (-_EPS, None, None)
        for d in self.splits:
            if d == s:
                continue
            if self._keeps_labels(s, u, (0, 0)):
                gain = self._delta(s, u, (0, 0)) + self._delta(d, (0, 0), u)
                if gain < best[0]:
                    best = (gain, d, None)
            for shape, members in self.by_shape[d].items():
                if not members or shape == u:
                    continue
                if not (self._keeps_labels(s, u, shape) and self._keeps_labels(d, shape, u)):
                    continue
                gain = self._delta(s, u, shape) + self._delta(d, shape, u)
                if gain < best[0]:
                    best = (gain, d, members[0])
        return best

    def refine(self, max_passes: int = 50) -> None:
        for _ in range(max_passes):
            improved = False
            for i in range(len(self.units)):
                gain, d, j = self._best_change(i)
                if d is None:
                    continue
                s = self.where[i]
                self._put(i, d)
                if j is not None:
                    self._put(j, s)
                improved = True
            if not improved:
                return

    def ensure_both_labels(self) -> None:
        """Move the smallest possible unit into any split lacking a label, if a donor can spare one."""
        for _ in range(4 * len(self.splits)):
            moved = False
            for s in self.splits:
                for l in (0, 1):
                    if self.has(s, l):
                        continue
                    options = [(self.units[i][0] + self.units[i][1], -self.count[d][l], i)
                               for i, d in enumerate(self.where)
                               if d != s and self.units[i][l] > 0 and self._keeps_labels(d, self.units[i], (0, 0))]
                    if options:
                        self._put(min(options)[2], s)
                        moved = True
            if not moved:
                return


def allocate(units: Sequence[Counts], weights: dict[str, float],
             base: dict[str, list[int]] | None = None) -> list[str]:
    """Split name for each unit (units in priority order, largest first); deterministic."""
    alloc = Allocation(units, weights, base)
    alloc.greedy()
    alloc.refine()
    alloc.ensure_both_labels()
    alloc.refine()           # polish again; moves never take a label back out of a split
    return [s for s in alloc.where if s is not None]
