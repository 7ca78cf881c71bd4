"""Seeded, group-aware, label-stratified splits, and the check that no group spans two splits.

A random video-level split puts a fake in test while its source person trains, which inflates results
(FF++ ships pair-level splits for this reason; the DFDC winner kept a fake and its original in one fold).
So whole groups are assigned, never single videos, and ``check_no_group_leak`` runs on every manifest.
"""
from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

from pipeline.datasets.allocate import allocate
from pipeline.datasets.entry import SEEDED, SPLITS, DatasetError, VideoEntry

log = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.7, 0.15, 0.15)


def _split_order(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def check_no_group_leak(entries: Iterable[VideoEntry]) -> None:
    """Raise ``DatasetError`` naming every group whose videos sit in more than one split."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        splits_of[e.group].add(e.split)
    bad = sorted(g for g, s in splits_of.items() if len(s) > 1)
    if bad:
        shown = "; ".join(f"{g} ({', '.join(sorted(splits_of[g], key=_split_order))})" for g in bad[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DatasetError(f"{len(bad)} group(s) span more than one split, which would leak identities "
                           f"between training and evaluation: {shown}{more}")


@dataclass
class _Unit:
    """Groups that must share a split (one group, or groups joined by links), with their videos."""
    indices: list[int]        # positions in the entries list
    counts: tuple[int, int]   # (real, fake) videos

    @property
    def size(self) -> int:
        return self.counts[0] + self.counts[1]


def _components(groups: Sequence[str], links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Union-find: group -> representative of the linked component."""
    parent = {g: g for g in groups}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for a, b in links:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return {g: find(g) for g in groups}


def _open_splits(entries: Sequence[VideoEntry], ratios: Sequence[float]) -> dict[str, float]:
    """Splits free units may go to, with renormalised weights.

    Splits the dataset already fills (Celeb-DF's official test list) take no seeded videos, so an official
    test set stays exactly official; if the dataset fills every split, free units spread over all three.
    """
    wanted = {s: float(r) for s, r in zip(SPLITS, ratios) if r > 0}
    fixed = {e.split for e in entries if e.split}
    open_ = {s: r for s, r in wanted.items() if s not in fixed} or wanted
    total = sum(open_.values())
    return {s: r / total for s, r in open_.items()}


def assign_splits(entries: Sequence[VideoEntry], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0,
                  links: Iterable[tuple[str, str]] = ()) -> list[VideoEntry]:
    """Give every entry without a split one, assigning whole groups; returns entries in the input order.

    Entries that already have a split (official files, a CSV column) keep it, and the other videos of their
    group (or linked groups) follow them. The remaining groups are shuffled with ``seed`` and allocated so
    each split's real and fake counts track ``ratios`` (stratified by label, see ``allocate``), with at
    least one real and one fake in every split when the groups allow it. Deterministic for a seed and a set
    of videos, whatever their order.
    """
    entries = list(entries)
    groups = sorted({e.group for e in entries})
    comp = _components(groups, links)
    members: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        members[comp[e.group]].append(i)

    out = list(entries)
    free: list[_Unit] = []
    for _, idx in sorted(members.items()):       # sorted: a stable order before the seeded shuffle
        fixed = Counter(entries[i].split for i in idx if entries[i].split)
        if fixed:
            by_group = {entries[i].group: entries[i].split for i in idx if entries[i].split}
            for i in idx:
                if not entries[i].split:
                    split = by_group.get(entries[i].group) or fixed.most_common(1)[0][0]
                    out[i] = replace(entries[i], split=split, split_source=SEEDED)
            continue
        labels = Counter(entries[i].label for i in idx)
        free.append(_Unit(idx, (labels[0], labels[1])))
    if not free:
        return out

    weights = _open_splits(entries, ratios)
    rng = random.Random(seed)
    rng.shuffle(free)                          # free is in a stable order first, so the seed alone decides
    free.sort(key=lambda u: -u.size)           # stable: equal sizes keep the seeded order
    base: dict[str, list[int]] = {s: [0, 0] for s in weights}
    for e in entries:
        if e.split in base:
            base[e.split][e.label] += 1
    for unit, split in zip(free, allocate([u.counts for u in free], weights, base)):
        for i in unit.indices:
            out[i] = replace(entries[i], split=split, split_source=SEEDED)
    _warn_thin_splits(out, weights)
    return out


def _warn_thin_splits(entries: Sequence[VideoEntry], weights: dict[str, float]) -> None:
    """Say when a split is empty or has one label only: its metrics would be undefined (AUC needs both)."""
    have = {s: Counter() for s in weights}
    for e in entries:
        if e.split in have:
            have[e.split][e.label] += 1
    groups_with = {l: len({e.group for e in entries if e.label == l}) for l in (0, 1)}
    for s, c in have.items():
        if not c:
            log.warning("split %s is empty: %d group(s) are too few for the split ratios %s", s,
                        len({e.group for e in entries}), ", ".join(f"{k} {w:.2f}" for k, w in weights.items()))
            continue
        for l, name in ((0, "real"), (1, "fake")):
            if groups_with[l] and not c[l]:
                log.warning("split %s has no %s video: only %d group(s) hold %s videos, too few to give every "
                            "split one", s, name, groups_with[l], name)
