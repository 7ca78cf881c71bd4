"""``features DATA --store STORE``: stage one, videos -> HDF5 feature store."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

HELP = "stage one: decode, detect faces, embed with ResNet50, write the resumable HDF5 feature store"


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def configure(parser) -> None:
    from pipeline.config import add_options
    from pipeline.datasets import DatasetConfig
    from stages.faces import FaceConfig
    from stages.preprocess import FeatureConfig
    parser.add_argument("data", metavar="DATA", help="dataset root (real/ + fake/, FF++, Celeb-DF, DFDC) or CSV")
    parser.add_argument("--store", default="data/features.h5", help="HDF5 store to create or extend")
    parser.add_argument("--config", help="TOML file with tables named features, faces and dataset")
    parser.add_argument("--new", action="store_true",
                        help="start a new store even if STORE exists with another config (old one kept as .bak)")
    parser.add_argument("--retry-failed", action="store_true", help="retry videos recorded as failed")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process; ray: Ray Data, locally or on a cluster")
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON on stdout")
    add_options(parser, FeatureConfig)
    add_options(parser, FaceConfig, skip=tuple(_names(FeatureConfig)))
    add_options(parser, DatasetConfig, skip=tuple(_names(FeatureConfig) | _names(FaceConfig)))
    from stages.ray_engine.config import RayConfig   # options only: Ray itself is imported by --engine ray
    add_options(parser, RayConfig)


def main(args) -> int:
    from pipeline import config as C
    from pipeline.datasets import DatasetConfig, load_manifest, manifest_sha256, write_manifest
    from pipeline.errors import PipelineError
    from pipeline.ui import kv_table, out
    from stages import extract
    from stages.faces import FaceConfig
    from stages.preprocess import FeatureConfig

    feat = C.resolve(FeatureConfig, args, args.config, section="features")
    faces = C.resolve(FaceConfig, args, args.config, section="faces")
    dcfg = C.resolve(DatasetConfig, args, args.config, section="dataset")
    entries = load_manifest(args.data, dcfg)
    if not entries:
        raise PipelineError(f"no videos found in {args.data}")
    store = Path(args.store)
    store.parent.mkdir(parents=True, exist_ok=True)
    manifest_path = store.with_name(store.name + ".manifest.csv")
    write_manifest(entries, manifest_path)
    digest = manifest_sha256(entries)
    resolved = {"features": C.to_dict(feat), "faces": C.to_dict(faces), "dataset": C.to_dict(dcfg),
                "data": str(Path(args.data).resolve()), "store": str(store.resolve()),
                "command": " ".join(["python -m pipeline", *sys.argv[1:]])}
    extra = {"config": resolved, "manifest": str(manifest_path.resolve()), "command": resolved["command"]}
    common = {"new": args.new, "retry_failed": args.retry_failed, "provenance_extra": extra,
              "manifest_sha256": digest, "quiet": args.json}
    if args.engine == "ray":   # imported here only: --engine local never loads Ray
        from stages import ray_engine
        rcfg = C.resolve(ray_engine.RayConfig, args, args.config, section="ray")
        resolved["ray"] = C.to_dict(rcfg)
        _, stats = ray_engine.run(feat, faces, rcfg, entries, store, **common)
        rows = extract.stats_rows(stats) + ray_engine.report_rows(stats)
    else:
        _, stats = extract.run(feat, faces, entries, store, **common)
        rows = extract.stats_rows(stats)
    store.with_name(store.name + ".config.json").write_text(json.dumps(resolved, indent=2) + "\n")
    if args.json:
        print(json.dumps({"store": str(store), **{k: (dict(v) if hasattr(v, "items") else v)
                                                    for k, v in vars(stats).items()}}, indent=2))
    else:
        out.print(kv_table(f"stage one: {store}", rows))
    return 0
