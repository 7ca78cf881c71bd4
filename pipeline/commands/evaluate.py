"""``evaluate RUN --store OTHER.h5``: score another store with a run (cross-dataset and robustness sets)."""
from __future__ import annotations

import argparse
import json
import sys

HELP = ("score every video of another feature store with a run's members and ensemble (cross-dataset and "
        "robustness tests); `report` then covers every evaluation set")


def configure(parser: argparse.ArgumentParser) -> None:
    from pipeline.core.config import add_options
    from pipeline.evaluate import EvaluateConfig
    parser.add_argument("run", metavar="RUN", help="trained run folder")
    parser.add_argument("--store", required=True, metavar="STORE",
                        help="feature store to score, made with the run's stage-one settings (a perturbed copy "
                             "from `features --perturb` is accepted)")
    parser.add_argument("--config", metavar="FILE", help="TOML file; its 'evaluate' table sets options")
    parser.add_argument("--json", action="store_true", help="print the evaluation record and AUCs as JSON")
    add_options(parser, EvaluateConfig)


def _auc(labels, probs) -> float | None:
    from ensembles.compare import StatsError, auc
    try:
        return auc(labels, probs)
    except StatsError:                      # one class only
        return None


def quick_aucs(folder, meta: dict) -> dict[str, dict]:
    """Video-level AUC per model and frame-level AUC per frame-scoring member (no intervals: see `report`)."""
    import numpy as np

    from ensembles.run_folder import combined
    name = meta["name"]
    _, splits = folder.read_evaluation(name, meta["models"])
    data = combined(splits, name)
    out = {m: {"video_auc": _auc(data.labels, data.prob(m)), "frame_auc": None} for m in data.models}
    frames = folder.evaluation_frames(name)
    for model in {r["model"] for r in frames}:
        rows = [r for r in frames if r["model"] == model]
        out[model]["frame_auc"] = _auc(np.array([int(r["label"]) for r in rows]),
                                       np.array([float(r["prob_fake"]) for r in rows]))
    return out


def _table(meta: dict, aucs: dict):
    from rich import box
    from rich.table import Table

    from pipeline.ui import cell
    v = meta["videos"]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("video-level AUC", justify="right", no_wrap=True)
    table.add_column("frame-level AUC", justify="right", no_wrap=True)
    show = lambda x: "n/a" if x is None else f"{x:.3f}"                 # noqa: E731
    for model, a in aucs.items():
        table.add_row(cell(model, "bold" if model == "ensemble" else ""), show(a["video_auc"]),
                      show(a["frame_auc"]) if a["frame_auc"] is not None else cell("-", "dim"))
    heading = (f"evaluation {meta['name']}: {v['scored']} videos ({v['fake']} fake, {v['real']} real, "
               f"{v['no_face']} without a face) of {meta['store'].get('path')}, split {meta['split']}"
               + (f", perturbation {meta['perturb']}" if meta["perturb"] else ""))
    return heading, table


def main(args: argparse.Namespace) -> int:
    from ensembles.run_folder import RunFolder
    from pipeline.core.config import resolve
    from pipeline.evaluate import EvaluateConfig, run
    from pipeline.ui import RichProgress, out, prose
    cfg = resolve(EvaluateConfig, args, args.config, section="evaluate", run=args.run, store=args.store)
    command = " ".join(["python -m pipeline", *sys.argv[1:]])
    with RichProgress(disable=args.json) as progress:
        meta = run(cfg, command, progress)
    folder = RunFolder(cfg.run)
    aucs = quick_aucs(folder, meta)
    if args.json:
        print(json.dumps({"evaluation": {k: meta[k] for k in ("name", "run", "split", "splits", "perturb",
                                                              "own_dataset", "videos")},
                          "store": meta["store"].get("path"), "auc": aucs}, indent=2))
        return 0
    heading, table = _table(meta, aucs)
    prose(out, heading, "bold")
    out.print(table)
    left = {k: n for k, n in meta["videos"].items() if k in ("train_split_of_own_dataset", "unlabelled") and n}
    for key, n in left.items():
        prose(out, f"left out: {n} video(s), {key.replace('_', ' ')}", "yellow")
    prose(out, f"written to {folder.evaluation_dir(meta['name'])}; `report {cfg.run}` covers it "
               "(intervals, paired tests, cross-dataset matrix)")
    return 0
