"""A training run as the report sees it: run.json, the aligned predictions per split, the histories, the
per-frame scores and every evaluation set (``evaluate``), all read through ``ensembles.run_folder`` (the one
reader of a run's files)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ensembles.ensemble import ENSEMBLE
from ensembles.run_folder import RunError, RunFolder, SplitPredictions, combined


@dataclass(frozen=True)
class EvaluationFiles:
    """One RUN/evaluations/<name>/: what was scored and the scores."""
    name: str
    meta: dict                              # evaluation.json
    data: SplitPredictions                  # every scored video (the store's splits together)
    frames: tuple[dict, ...]                # frames.csv rows (heads that score frames)


@dataclass(frozen=True)
class RunData:
    run_dir: Path
    info: dict                              # run.json
    predictions_path: Path
    splits: dict[str, SplitPredictions]     # "val", "test" (whichever are present)
    histories: dict[str, dict]              # member -> column -> (epochs,)
    notes: tuple[str, ...]                  # things the reader should know (missing histories, ...)
    frames: tuple[dict, ...] = ()           # RUN/frames.csv rows (val and test)
    evaluations: tuple[EvaluationFiles, ...] = ()

    @property
    def members(self) -> list[dict]:
        return list(self.info.get("members") or [])

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def name(self) -> str:
        return self.run_dir.name


def load_evaluations(folder: RunFolder, order: list[str]) -> tuple[list[EvaluationFiles], list[str]]:
    out, notes = [], []
    for name in folder.evaluations():
        try:
            meta, splits = folder.read_evaluation(name, order)
            out.append(EvaluationFiles(name, meta, combined(splits, name), tuple(folder.evaluation_frames(name))))
        except RunError as exc:
            notes.append(f"evaluation {name!r} left out: {exc}")
    return out, notes


def load_run(run_dir: str | Path) -> RunData:
    folder = RunFolder(run_dir)
    if not folder.path.is_dir():
        raise RunError(f"run folder not found: {folder.path}")
    info = folder.read()
    members = [m.get("name") for m in info.get("members") or [] if isinstance(m, dict)]
    if not folder.predictions.is_file():
        raise RunError(f"no predictions.csv in {folder.path}: training writes it after its last epoch")
    splits = folder.read_predictions([ENSEMBLE, *members])
    notes, histories = [], {}
    for name in members:
        try:
            histories[name] = folder.read_history(name)
        except RunError:
            notes.append(f"member {name}: no history.csv, so no training curves")
        except (ValueError, KeyError) as exc:
            notes.append(f"member {name}: history.csv unreadable ({exc})")
    evaluations, more = load_evaluations(folder, [ENSEMBLE, *members])
    return RunData(folder.path, info, folder.predictions, splits, histories, tuple(notes + more),
                   tuple(folder.read_frames()), tuple(evaluations))
