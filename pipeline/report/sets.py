"""Every set of videos a report measures runs on, and what is built across them.

A run is measured on its own test split (or val, without one) and on each evaluation set that ``evaluate``
wrote into it: another dataset's store (a cross-dataset set) or a perturbed copy of a store (a robustness
set). Each set gets the same metrics, bootstrap intervals and paired tests (``SetResult``). Across sets:
the cross-dataset matrix (rows: each run's models, columns: unperturbed sets, cells: video AUC with its
interval), the robustness curves (AUC against perturbation level, level 0 being the same videos
unperturbed), and paired tests between two runs' ensembles on sets both were evaluated on.

Two sets hold the same videos when their *key* matches: the dataset (its manifest's sha256, else the
store's path), the splits scored and the perturbation; paired tests between runs also check that the
video ids and labels are equal.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensembles.ensemble import ENSEMBLE
from ensembles.run_folder import SplitPredictions
from pipeline.report import pairs
from pipeline.report.frames import FrameLevel, frame_level
from pipeline.report.load import EvaluationFiles, RunData
from pipeline.report.metrics import Evaluation, choose_thresholds, evaluate_split


@dataclass(frozen=True)
class ReportSet:
    name: str                 # "own", or the evaluation's name (its folder under RUN/evaluations/)
    label: str                # for sentences: "test split of the training store f.h5"
    short: str                # for table columns: "f test (own)"
    kind: str                 # "own" | "clean" | "perturbed"
    key: tuple                # (dataset, splits, perturb): equal keys, same videos
    perturb: str              # "" or "KIND:LEVEL"
    data: SplitPredictions
    frames: tuple[dict, ...]  # frames.csv rows of these videos
    meta: dict                # evaluation.json (own set: the run's store provenance)

    @property
    def base(self) -> tuple:
        """The key without the perturbation: a perturbed set's unperturbed counterpart has this base."""
        return self.key[:2]


@dataclass(frozen=True)
class SetResult:
    set: ReportSet
    ev: Evaluation
    pairs: list[dict]
    headline: str
    frames: FrameLevel | None


def _dataset(store: dict, fallback: str) -> str:
    return store.get("manifest_sha256") or store.get("path") or fallback


def own_set(run: RunData, split: str) -> ReportSet:
    store = run.info["store"]
    file = Path(store.get("path") or "store.h5").name
    perturb = (run.info.get("store_identity") or {}).get("perturb", "")
    return ReportSet("own", f"{split} split of the training store {file}", f"{file.removesuffix('.h5')} {split} (own)",
                     "own", (_dataset(store, "own"), (split,), perturb), perturb, run.splits[split],
                     tuple(r for r in run.frames if r["split"] == split), {"store": store})


def evaluation_set(e: EvaluationFiles) -> ReportSet:
    store = e.meta.get("store") or {}
    perturb = e.meta.get("perturb") or ""
    splits = tuple(e.meta.get("splits") or ())
    file = Path(store.get("path") or "?").name
    which = "all splits" if e.meta.get("split") == "all" else "/".join(splits) + " split" + "s" * (len(splits) > 1)
    label = (f"evaluation set {e.name}: {which} of {file}"
             + (f", perturbed with {perturb}" if perturb else ""))
    return ReportSet(e.name, label, e.name, "perturbed" if perturb else "clean",
                     (_dataset(store, e.name), splits, perturb), perturb, e.data, e.frames, e.meta)


def report_sets(run: RunData, split: str) -> tuple[list[ReportSet], list[str]]:
    """The own set first, then each evaluation set (one holding the own set's videos again is left out)."""
    sets, notes = [own_set(run, split)], []
    for e in run.evaluations:
        s = evaluation_set(e)
        twin = next((t for t in sets if t.key == s.key), None)
        if twin is not None:
            notes.append(f"evaluation set {s.name} holds the same videos as {twin.short}: shown once")
            continue
        sets.append(s)
    return sets, notes


def evaluate_set(run: RunData, s: ReportSet, cfg) -> SetResult:
    """Metrics with intervals, paired tests and frame-level metrics of one set, at the run's thresholds."""
    thresholds, source, notes = choose_thresholds(run, s.data.models)
    ev = evaluate_split(s.data, thresholds, source, cfg.bootstrap, cfg.seed, cfg.alpha, notes)
    rows = pairs.compare_all(ev, cfg.exact_below)
    for r in rows:
        r["set"] = s.name
    return SetResult(s, ev, rows, pairs.headline(ev, rows),
                     frame_level(s.frames, s.data, cfg.bootstrap, cfg.seed, cfg.alpha))


def _cell(ev: Evaluation, model: str) -> dict:
    return {"value": ev.value(model, "roc_auc"), "ci": list(ev.ci(model, "roc_auc"))}


def cross_dataset(runs: list[tuple[str, list[SetResult]]]) -> dict | None:
    """Rows: every model of every run; columns: the unperturbed sets; cells: video-level ROC AUC [CI].
    None when there is nothing to cross (one run, one set)."""
    columns: dict[tuple, str] = {}
    for _, results in runs:
        for r in results:
            if r.set.kind != "perturbed":
                columns.setdefault(r.set.key, r.set.short)
    if len(columns) < 2 and len(runs) < 2:
        return None
    rows = []
    for run_label, results in runs:
        by_key = {r.set.key: r for r in results if r.set.kind != "perturbed"}
        for model in results[0].ev.data.models:
            cells = {label: _cell(by_key[k].ev, model) for k, label in columns.items()
                     if k in by_key and model in by_key[k].ev.data.models}
            rows.append({"run": run_label, "model": model,
                         "label": model if len(runs) == 1 else f"{run_label}/{model}", "cells": cells})
    return {"level": "video", "metric": "roc_auc", "columns": list(columns.values()), "rows": rows}


def robustness(results: list[SetResult], run_label: str = "") -> list[dict]:
    """Points (model, perturbation kind, level, AUC [CI]); level 0 is the same videos unperturbed, when the
    report has them (the own test split for a perturbed copy of the training store)."""
    from stages.perturb import parse
    clean = {r.set.base: r for r in results if not r.set.perturb}
    perturbed = [r for r in results if r.set.perturb]
    several = len({r.set.base for r in perturbed}) > 1
    points, done = [], set()
    for r in perturbed:
        p = parse(r.set.perturb)
        origin = clean.get(r.set.base)
        curve = p.kind + (f" on {origin.set.short if origin else r.set.name}" if several else "")
        for level, source in ((p.level, r), (0, origin)):
            if source is None or (curve, level, source.set.name) in done:
                continue
            done.add((curve, level, source.set.name))
            points += [{"run": run_label, "model": m, "kind": p.kind, "curve": curve, "level": level,
                        "parameter": p.param if level else None, "set": source.set.name, **_cell(source.ev, m)}
                       for m in source.ev.data.models]
    return sorted(points, key=lambda q: (q["model"], q["curve"], q["level"]))


def run_label(run: RunData, others: list[RunData]) -> str:
    """The run's folder name, with its parent's when another run has the same folder name."""
    clash = any(o.run_dir.name == run.run_dir.name and o.run_dir != run.run_dir for o in others)
    return f"{run.run_dir.parent.name}/{run.run_dir.name}" if clash else run.run_dir.name


def compare_runs(a: tuple[str, list[SetResult]], b: tuple[str, list[SetResult]], cfg) -> tuple[list[dict], list[str]]:
    """Paired tests between two runs' ensembles on every set both were evaluated on (the same videos)."""
    rows, notes = [], []
    for ra in a[1]:
        rb = next((r for r in b[1] if r.set.key == ra.set.key), None)
        if rb is None:
            continue
        da, db = ra.set.data, rb.set.data
        if not (np.array_equal(da.video_ids, db.video_ids) and np.array_equal(da.labels, db.labels)):
            notes.append(f"{a[0]} and {b[0]} on {ra.set.short}: not the same videos or labels, no paired test")
            continue
        ma, mb = f"{a[0]}/{ENSEMBLE}", f"{b[0]}/{ENSEMBLE}"
        data = SplitPredictions(ra.set.short, da.video_ids, da.labels, da.groups, da.no_face | db.no_face,
                                (ma, mb), np.vstack([da.prob(ENSEMBLE), db.prob(ENSEMBLE)]))
        thresholds = {ma: ra.ev.thresholds[ENSEMBLE], mb: rb.ev.thresholds[ENSEMBLE]}
        source = {ma: ra.ev.threshold_source[ENSEMBLE], mb: rb.ev.threshold_source[ENSEMBLE]}
        ev = evaluate_split(data, thresholds, source, cfg.bootstrap, cfg.seed, cfg.alpha)
        for row in pairs.compare_all(ev, cfg.exact_below):
            rows.append({**row, "set": ra.set.name})
    return rows, notes
