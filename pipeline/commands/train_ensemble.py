"""``train-ensemble --store STORE --run RUN``: stage two, train every member of the ensemble on the store."""
from __future__ import annotations

import dataclasses
import math
import sys

HELP = "stage two: train the ensemble (attention Bi-LSTM/Bi-GRU, LSTM, GRU) on the feature store only"


def configure(parser) -> None:
    from pipeline.core.config import add_options
    from stages.train import TrainConfig
    parser.add_argument("--store", default="data/features.h5", help="feature store written by `features`")
    parser.add_argument("--run", default="runs/latest", help="run folder to create (or continue with --resume)")
    # No square brackets in help texts: rich-argparse reads them as markup.
    parser.add_argument("--config", help="TOML file: a 'train' table of options and a 'members' array of tables "
                                         "(name, head, seed, options); the default members without one")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from each member's last checkpoint")
    add_options(parser, TrainConfig)


def overrides(args, cls) -> dict:
    """[train] values of --config, then the options given on the command line."""
    from pipeline.core.config import read_file
    names = {f.name for f in dataclasses.fields(cls)}
    data = read_file(args.config) if getattr(args, "config", None) else {}
    values = dict(data.get("train") or {})
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return values


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def run_table(run_dir, info: dict):
    """The end-of-training table: each member at its best epoch, then the ensemble at its threshold."""
    from rich import box
    from rich.table import Table

    from pipeline.ui import cell
    table = Table(title=cell(f"stage two: {run_dir}\nvalidation loss, AUC and accuracy at each member's best epoch"),
                  title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("member", no_wrap=True)
    for col in ("params", "epochs", "best", "loss", "AUC", "acc", "s"):
        table.add_column(col, justify="right", no_wrap=True)
    for m in info["members"]:
        label = m["name"] if m["name"].startswith(m["head"]) else f"{m['name']} ({m['head']})"
        table.add_row(cell(label + ("" if m.get("in_ensemble", True) else "*")),
                      f"{m.get('params', 0) / 1e6:.2f}M", str(m.get("epochs", "-")), str(m.get("best_epoch", "-")),
                      _fmt(m.get("val_loss")), _fmt(m.get("val_auc")), _fmt(m.get("val_acc")),
                      f"{m.get('seconds', 0):.1f}")
    ev = info["ensemble_val"]
    table.add_row(cell("ensemble", "bold") + cell(" (mean)"), "", "", "", "", _fmt(ev["auc"]), _fmt(ev["acc"]),
                  f"{sum(m.get('seconds', 0) for m in info['members']):.1f}")
    table.caption = cell(f"threshold {info['threshold']:.3f} ({info['threshold_method']}): val acc "
                         f"{_fmt(ev['acc_at_threshold'])} on {ev['videos']} videos with a face"
                         + ("; * compared, not averaged"
                            if not all(m.get("in_ensemble", True) for m in info["members"]) else ""))
    return table


def main(args) -> int:
    from ensembles.ensemble import read_ensemble_config
    from pipeline.core.config import read_file
    from pipeline.ui import RichProgress, console
    from stages import train_ensemble
    from stages.train import TrainConfig
    # Without [[members]] in --config: the default members, or on --resume the run's own.
    members = read_ensemble_config(args.config) if "members" in read_file(args.config) else None
    command = " ".join(["python -m pipeline", *sys.argv[1:]])
    with RichProgress("epochs") as progress:
        info = train_ensemble.run(args.store, args.run, overrides(args, TrainConfig), members, resume=args.resume,
                                  command=command, progress=progress)
    console.print(run_table(args.run, info))
    return 0

