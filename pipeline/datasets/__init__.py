"""Dataset manifests: adapters per published layout, group-aware splits, and the manifest CSV.

    entries = load_manifest(root, DatasetConfig(dataset="ffpp"))   # detects the layout when dataset="auto"
    write_manifest(entries, store_path.with_suffix(".manifest.csv")); manifest_sha256(entries)
"""
from pipeline.datasets import celebdf, csvfile, dfdc, ffpp, folder  # noqa: F401  (register the adapters)
from pipeline.datasets.config import DatasetConfig
from pipeline.datasets.detect import detect_layout
from pipeline.datasets.entry import DatasetError, VideoEntry
from pipeline.datasets.load import check_manifest, load_manifest, summarize
from pipeline.datasets.manifest_io import manifest_sha256, read_manifest, write_manifest
from pipeline.datasets.registry import list_adapters
from pipeline.datasets.split import assign_splits, check_no_group_leak

__all__ = ["VideoEntry", "DatasetConfig", "load_manifest", "write_manifest", "read_manifest", "manifest_sha256",
           "check_no_group_leak", "assign_splits", "DatasetError", "detect_layout", "check_manifest",
           "summarize", "list_adapters"]
