"""``train-ensemble --store STORE --run RUN``: stage two, train every member of the ensemble on the store."""
from __future__ import annotations

import dataclasses
import sys

HELP = "stage two: train the ensemble (attention Bi-LSTM/Bi-GRU, LSTM, GRU) on the feature store only"


def configure(parser) -> None:
    from pipeline.config import add_options
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
    from pipeline.config import read_file
    names = {f.name for f in dataclasses.fields(cls)}
    data = read_file(args.config) if getattr(args, "config", None) else {}
    values = dict(data.get("train") or {})
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return values


def main(args) -> int:
    from ensembles.ensemble import read_ensemble_config
    from pipeline.config import read_file
    from stages import train_ensemble
    from stages.train import TrainConfig
    # Without [[members]] in --config: the default members, or on --resume the run's own.
    members = read_ensemble_config(args.config) if "members" in read_file(args.config) else None
    command = " ".join(["python -m pipeline", *sys.argv[1:]])
    train_ensemble.run(args.store, args.run, overrides(args, TrainConfig), members, resume=args.resume,
                       command=command)
    return 0

