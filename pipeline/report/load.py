"""A training run as the report sees it: run.json, the aligned predictions per split and the histories,
all read through ``ensembles.run_folder`` (the one reader of a run's files)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ensembles.ensemble import ENSEMBLE
from ensembles.run_folder import RunError, RunFolder, SplitPredictions


@dataclass(frozen=True)
class RunData:
    run_dir: Path
    info: dict                              # run.json
    predictions_path: Path
    splits: dict[str, SplitPredictions]     # "val", "test" (whichever are present)
    histories: dict[str, dict]              # member -> column -> (epochs,)
    notes: tuple[str, ...]                  # things the reader should know (missing histories, ...)

    @property
    def members(self) -> list[dict]:
        return list(self.info.get("members") or [])

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)


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
    return RunData(folder.path, info, folder.predictions, splits, histories, tuple(notes))
