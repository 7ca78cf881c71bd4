"""``python -m pipeline COMMAND``: a thin shell around each stage's ``run(config)``.

Commands are modules in ``pipeline.commands`` imported only when used, so ``--help`` stays fast (no torch).
Each module has ``HELP``, ``configure(parser)`` and ``main(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from pipeline import __version__
from pipeline.core.errors import PipelineError

# name -> module under pipeline.commands; the names are the public interface (issues, Makefile, README).
COMMANDS = {
    "sample": "sample",
    "faces": "faces",
    "features": "features",
    "inspect": "inspect",
    "train-ensemble": "train_ensemble",
    "train-head": "train_head",
    "report": "report",
    "predict": "predict",
    "evaluate": "evaluate",
    "export": "export",
    "serve": "serve",
}


# Commands that run stage one, whose ffmpeg decoding overlaps torch's work: torch's OpenMP threads must sleep
# while they wait, not spin (spinning took about a fifth of the CPU from ffmpeg on 2 cores; README,
# "Benchmarks"). It only takes effect before torch is loaded; a user's own OMP_WAIT_POLICY wins.
STAGE_ONE_COMMANDS = ("features", "predict", "faces", "evaluate", "serve")


def _formatter() -> type[argparse.HelpFormatter]:
    try:
        from rich_argparse import RichHelpFormatter
        RichHelpFormatter.group_name_formatter = str   # keep "FeatureConfig options" as written
        return RichHelpFormatter
    except ImportError:  # help still works, just plain
        return argparse.HelpFormatter


def _chosen(argv: list[str] | None) -> str | None:
    """The command named on the command line, so only its options (and their imports) are built."""
    for token in sys.argv[1:] if argv is None else argv:
        if not token.startswith("-"):
            return token
    return None


def build_parser(argv: list[str] | None = None, all_commands: bool = False) -> argparse.ArgumentParser:
    fmt = _formatter()
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", formatter_class=fmt,
        description="Deepfake-video detection: a cached HDF5 feature store (MTCNN faces, ResNet50 features) "
                    "and an ensemble of temporal heads trained on it.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"pipeline.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=fmt)
        if all_commands or name == _chosen(argv):
            module.configure(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    if _chosen(argv) in STAGE_ONE_COMMANDS and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from rich.logging import RichHandler

    from pipeline.ui import console
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)])
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except PipelineError as exc:
        from rich.console import Console
        from rich.markup import escape   # "pip install '.[ray]'" and paths with brackets must print as they are
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted: work finished so far is kept", file=sys.stderr)
        return 130
