"""``train-head HEAD --store STORE --run RUN``: train one more head into a finished run on the same store."""
from __future__ import annotations

import sys

HELP = "train one more head into an existing run (same store, no re-extraction); it joins the comparisons"


def configure(parser) -> None:
    from ensembles.registry import list_heads
    from pipeline.core.config import add_options
    from stages.train import TrainConfig
    parser.add_argument("head", metavar="HEAD", help=f"registered head: {', '.join(list_heads())}")
    parser.add_argument("--store", default="data/features.h5", help="the store the run was trained on")
    parser.add_argument("--run", default="runs/latest", help="a finished run folder")
    parser.add_argument("--name", help="member name in the run (default: HEAD)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the member (default: 0)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="head option, e.g. --option hidden=256 (repeatable)")
    parser.add_argument("--join-ensemble", action="store_true",
                        help="average this member into the ensemble too (default: compared, not averaged)")
    parser.add_argument("--resume", action="store_true", help="continue this member's interrupted training")
    parser.add_argument("--config", help="TOML file with a 'train' table (default: the run's own train config)")
    add_options(parser, TrainConfig)


def main(args) -> int:
    from ensembles.ensemble import MemberSpec
    from ensembles.registry import head_class, parse_option
    from pipeline.commands.train_ensemble import overrides, run_table
    from pipeline.core.errors import PipelineError
    from pipeline.ui import RichProgress, console
    from stages import train_ensemble
    from stages.train import TrainConfig
    head_class(args.head)                       # unknown head: the error lists the known ones
    options = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep:
            raise PipelineError(f"--option {item!r}: expected KEY=VALUE, e.g. hidden=256")
        options[key.strip()] = parse_option(args.head, key.strip(), raw.strip())
    spec = MemberSpec(args.name or args.head, args.head, options, args.seed, args.join_ensemble).validate()
    command = " ".join(["python -m pipeline", *sys.argv[1:]])
    with RichProgress("epochs") as progress:
        info = train_ensemble.add_head(args.store, args.run, spec, overrides(args, TrainConfig), resume=args.resume,
                                       command=command, progress=progress)
    console.print(run_table(args.run, info))
    return 0
