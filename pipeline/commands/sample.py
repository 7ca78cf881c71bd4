"""``python -m pipeline sample OUT --videos N --seed S``: write the generated demo / test dataset."""
from __future__ import annotations

import argparse

HELP = ("generate a small labelled sample dataset (real photos filmed by a virtual handheld camera; fakes "
        "self-blended into the face): a demo and test fixture, not a benchmark")


def configure(parser: argparse.ArgumentParser) -> None:
    from pipeline.core.config import add_options
    from pipeline.sample import SampleConfig
    parser.add_argument("out", metavar="OUT", help="folder to create (or an earlier sample's folder to rewrite)")
    parser.add_argument("--config", metavar="FILE",
                        help='TOML file: keys of its "sample" table (or top-level keys) set the options')
    add_options(parser, SampleConfig)


def main(args: argparse.Namespace) -> int:
    import csv
    import time
    from collections import Counter


    from pipeline.core.config import resolve
    from pipeline.sample import SampleConfig, run
    from pipeline.ui import RichProgress, kv_table

    cfg = resolve(SampleConfig, args, args.config, section="sample", out=args.out)
    start = time.perf_counter()
    with RichProgress() as progress:
        out = run(cfg, progress)          # also saves the resolved config as OUT/sample_config.json
    seconds = time.perf_counter() - start
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = Counter(r["label"] for r in rows)
    identities = Counter(r["identity"] for r in rows)
    from pipeline.ui import out as screen
    screen.print(kv_table(f"sample dataset {out}", [
        ("clips", f"{len(rows)} ({labels['real']} real, {labels['fake']} fake)"),
        ("sources (groups)", len({r["group"] for r in rows})),
        ("identities", ", ".join(f"{name} {n}" for name, n in sorted(identities.items()))),
        ("clip", f"{cfg.width}x{cfg.height}, {cfg.frames} frames at {cfg.fps} fps, H.264 crf {cfg.crf}"),
        ("seed", cfg.seed),
        ("time", f"{seconds:.1f} s"),
        ("manifest", out / "manifest.csv"),
        ("config", out / "sample_config.json"),
    ]))
    return 0
