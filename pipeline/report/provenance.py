"""What produced the numbers: the feature store's provenance, dataset sizes, face coverage, versions, commands.

The store provenance comes from run.json (training copies it there), so the report works when the store
file itself is gone; when the store is still on disk it adds the train split and extraction failures.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.core.versions import package_versions
from pipeline.report.load import RunData

log = logging.getLogger(__name__)

REPORT_PACKAGES = ("numpy", "scipy", "scikit-learn", "matplotlib", "torch", "h5py")


def report_versions() -> dict[str, str]:
    return package_versions(*REPORT_PACKAGES)


def store_counts(path: str | None) -> tuple[list[dict] | None, str]:
    """Per-video (split, label, status) from the store file, or None with the reason it was not read."""
    if not path:
        return None, "run.json records no store path"
    if not Path(path).is_file():
        return None, f"store {path} is not on this machine"
    try:
        from features.store import FeatureStore, StoreError
    except ImportError as exc:
        return None, f"features.store unavailable ({exc})"
    try:
        with FeatureStore.open(path) as st:
            records = st.videos(status=("ok", "no_face", "failed"))
    except (StoreError, OSError, KeyError, ValueError) as exc:
        log.warning("could not read store %s for dataset sizes: %s", path, exc)
        return None, f"store {path} unreadable: {exc}"
    return [{"split": r.split, "label": int(r.label), "status": r.status} for r in records], f"store {path}"


def _sizes_from_predictions(run: RunData) -> list[dict]:
    rows = []
    for split in ("train", "val", "test"):
        d = run.splits.get(split)
        if d is None:
            continue
        rows.append({"split": split, "real": int(np.sum(d.labels == 0)), "fake": int(np.sum(d.labels == 1)),
                     "no_face": int(d.no_face.sum()), "failed": None})
    return rows


def _sizes_from_store(records: list[dict]) -> list[dict]:
    rows = []
    for split in sorted({r["split"] for r in records}, key=lambda s: ("train", "val", "test").index(s)
                        if s in ("train", "val", "test") else 9):
        mine = [r for r in records if r["split"] == split and r["status"] != "failed"]
        rows.append({"split": split, "real": sum(r["label"] == 0 for r in mine),
                     "fake": sum(r["label"] == 1 for r in mine),
                     "no_face": sum(r["status"] == "no_face" for r in mine),
                     "failed": sum(r["split"] == split and r["status"] == "failed" for r in records)})
    return rows


def dataset_sizes(run: RunData) -> tuple[list[dict], str]:
    """Rows {split, real, fake, no_face, failed}, and where they came from."""
    records, source = store_counts(run.info["store"].get("path"))
    if records:
        return _sizes_from_store(records), source
    return _sizes_from_predictions(run), (f"predictions.csv (val and test only; {source}, so the train split "
                                          f"and extraction failures are not counted)")


def commands(run: RunData, report_command: str) -> list[tuple[str, str]]:
    """(stage, command) in the order that reproduces the report; unrecorded ones say so."""
    store = run.info["store"]
    features = store.get("command") or ("(not recorded in the store; its resolved config is under "
                                        "'Feature store' above)")
    return [("stage one: features", features),
            ("stage two: training", run.info.get("command") or "(not recorded in run.json)"),
            ("this report", report_command)]


def collect(run: RunData, report_command: str) -> dict:
    store = dict(run.info["store"])
    sizes, source = dataset_sizes(run)
    return {
        "store": store,
        "random_weights": store.get("random_weights"),
        "sizes": sizes, "sizes_source": source,
        "versions": {"store": store.get("versions") or {}, "training": run.info.get("versions") or {},
                     "report": report_versions()},
        "commands": commands(run, report_command),
        "run_created": run.info.get("created"),
        "members": run.members,
        "train_config": run.info.get("train_config") or {},
    }
