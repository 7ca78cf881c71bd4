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
    from pipeline.core.config import add_options
    from pipeline.datasets import DatasetConfig
    from stages.faces import FaceConfig
    from stages.preprocess import FeatureConfig
    from stages.ray_engine.config import RayConfig   # options only: Ray itself is imported by --engine ray
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
    add_options(parser, RayConfig)


def summary_rows(stats) -> list[tuple[str, object]]:
    rows = [("videos in manifest", stats.total), ("already stored (skipped)", stats.skipped),
            ("extracted", stats.done), ("  of which no face", stats.no_face),
            ("failed", sum(stats.failed.values()))]
    rows += [(f"  {reason}", n) for reason, n in stats.failed.most_common()]
    if stats.frames:
        rows.append(("face coverage", f"{stats.faces / stats.frames:.1%} of {stats.frames} sampled frames"))
    if stats.seconds:
        n = stats.done + sum(stats.failed.values())
        rows.append(("throughput", f"{n / stats.seconds:.2f} videos/s, {stats.frames / stats.seconds:.1f} "
                                   f"frames/s ({stats.seconds:.1f} s)"))
    if stats.duplicates:
        rows.append(("duplicates dropped", stats.duplicates))
    return rows + ray_rows(stats.engine)


def ray_rows(r: dict) -> list[tuple[str, object]]:
    """The Ray engine's own figures: cluster, plan, where the work ran."""
    if r.get("engine") != "ray":
        return []
    from stages.ray_engine.cluster import Plan
    plan = Plan(**{**r["plan"], "actors": tuple(r["plan"]["actors"])})
    out = [("engine", f"ray {r['ray_version']} at {r['address']}: {r['nodes']} node(s), {r['cpus']:g} CPU, "
                      f"{r['gpus']:g} GPU"),
           ("plan", f"{plan.text()}; backbone in {r['precision']}")]
    for node, work in sorted(r.get("work_per_node", {}).items()):
        out.append((f"  node {node[:12]}", f"{work['task']} videos in tasks, {work['actor']} in actors"))
    secs = r.get("seconds_per_video")
    if secs:
        out.append(("worker seconds per video", f"tasks {secs['task']:.3f} (decode, detect, crop), "
                                                f"actors {secs['actor']:.3f}"))
    return out


def engine_for(args, feat, faces):
    """The engine ``--engine`` names (Ray is imported only for ``ray``)."""
    if args.engine == "ray":
        from pipeline.core import config as C
        from stages.ray_engine.config import RayConfig
        from stages.ray_engine.engine import RayEngine
        rcfg = C.resolve(RayConfig, args, args.config, section="ray")
        return RayEngine(feat, faces, rcfg), {"ray": C.to_dict(rcfg)}
    from stages.local_engine import LocalEngine
    return LocalEngine(feat, faces), {}


def main(args) -> int:
    from features.lock import WriterLock
    from features.writer import StoreWriter
    from pipeline.core import config as C
    from pipeline.core.atomic import write_json
    from pipeline.core.errors import PipelineError
    from pipeline.datasets import DatasetConfig, load_manifest, manifest_sha256, write_manifest
    from pipeline.ui import RichProgress, kv_table, out
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
    manifest_path = store.with_name(store.name + ".manifest.csv")
    command = " ".join(["python -m pipeline", *sys.argv[1:]])
    resolved = {"features": C.to_dict(feat), "faces": C.to_dict(faces), "dataset": C.to_dict(dcfg),
                "data": str(Path(args.data).resolve()), "store": str(store.resolve()), "command": command}
    extra = {"config": resolved, "manifest": str(manifest_path.resolve()), "command": command}
    with WriterLock(store) as lock:                     # before anything beside the store is written
        engine, more = engine_for(args, feat, faces)
        resolved.update(more)
        with engine, StoreWriter(store, engine.provenance(extra), engine.identity(), entries, new=args.new,
                                 lock=lock) as writer:
            write_manifest(entries, manifest_path)       # the store accepted this run: now its files
            write_json(store.with_name(store.name + ".config.json"), resolved)
            with RichProgress(disable=args.json) as progress:
                stats = extract.run(writer, engine, entries, retry_failed=args.retry_failed,
                                    manifest_sha256=manifest_sha256(entries), progress=progress)
    if args.json:
        payload = {k: (dict(v) if hasattr(v, "items") else v) for k, v in vars(stats).items() if k != "engine"}
        if stats.engine.get("engine") == "ray":
            payload["ray"] = stats.engine
        print(json.dumps({"store": str(store), **payload}, indent=2))
    else:
        out.print(kv_table(f"stage one: {store}", summary_rows(stats)))
    return 0
