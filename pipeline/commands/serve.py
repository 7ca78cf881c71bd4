"""``serve --run RUN``: the web page and HTTP API (FastAPI + uvicorn) over the ``predict`` path."""
from __future__ import annotations

import os

HELP = "serve a web page and an HTTP API that judge uploaded videos with a trained run"


def configure(parser) -> None:
    from pipeline.core.config import add_options
    from pipeline.serve.config import TOKEN_ENV, ServeConfig
    parser.add_argument("--run", default="runs/latest", help="training run folder (default runs/latest)")
    parser.add_argument("--config", help="TOML file; its [serve] table sets the options below")
    parser.add_argument("--token", help=f"bearer token for every API call (default: ${TOKEN_ENV}; required "
                                        "when --host is not loopback)")
    add_options(parser, ServeConfig)


def main(args) -> int:
    from pipeline.core.config import resolve
    from pipeline.core.errors import PipelineError
    from pipeline.serve.config import TOKEN_ENV, ServeConfig
    from pipeline.ui import console, line
    # Options first (a refused --host stops here, in a second), then the heavy imports and the models.
    cfg = resolve(ServeConfig, args, args.config, "serve", token=args.token or os.environ.get(TOKEN_ENV) or None)
    try:
        import uvicorn

        from pipeline.serve.app import create_app
    except ImportError as exc:
        raise PipelineError(f"serve needs the serve extra ({exc.name} is missing): pip install -e '.[serve]'") from exc
    from pipeline.serve.jobs import Board, limit_arenas
    from pipeline.serve.scoring import Scorer
    from pipeline.serve.uploads import UploadDir

    limit_arenas()                                             # before the models and threads are made
    scorer = Scorer(args.run, cfg.device, cfg.explain)        # loads the models: a few seconds
    uploads = UploadDir(cfg.workdir or None)
    board = Board(scorer, uploads, cfg.queue, cfg.batch, cfg.keep_minutes * 60).start()
    if scorer.random_weights:
        console.print(line(("RANDOM BACKBONE WEIGHTS", "bold white on red"),
                           ": this run's verdicts are for testing the pipeline only"))
    console.print(line("serving ", (args.run, "bold"), f" on http://{cfg.host}:{cfg.port}/ (API docs at /docs; ",
                       "token required" if cfg.token else "no token", ")"), highlight=False)
    try:
        uvicorn.run(create_app(cfg, board), host=cfg.host, port=cfg.port, log_level=cfg.log_level,
                    timeout_graceful_shutdown=5)
    finally:
        board.stop()
        uploads.close()
    return 0
