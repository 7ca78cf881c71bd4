"""Which layout a dataset root has, from marker files and folders (checked in a fixed order)."""
from __future__ import annotations

from pathlib import Path

from pipeline.datasets.celebdf import is_celebdf
from pipeline.datasets.dfdc import metadata_files
from pipeline.datasets.entry import DatasetError
from pipeline.datasets.ffpp import is_ffpp
from pipeline.datasets.files import describe
from pipeline.datasets.folder import is_folder

EXPECTED = ("a .csv file or a folder with manifest.csv (csv); original_sequences/ and manipulated_sequences/ "
            "(ffpp); Celeb-real/ and Celeb-synthesis/ (celebdf); metadata.json in ROOT or its part folders "
            "(dfdc); real/ and fake/, or train/ val/ test/ holding them (folder)")


def detect_layout(root: Path) -> str:
    """csv file or manifest.csv -> csv; FF++ markers -> ffpp; Celeb-DF -> celebdf; metadata.json -> dfdc;
    real/ + fake/ -> folder. The order matters: a generated sample has manifest.csv *and* real/ fake/."""
    if not root.exists():
        raise DatasetError(f"dataset root not found: {root}")
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise DatasetError(f"{root} is a file but not a .csv; expected a dataset folder or a CSV manifest")
    if (root / "manifest.csv").is_file():
        return "csv"
    if is_ffpp(root):
        return "ffpp"
    if is_celebdf(root):
        return "celebdf"
    if metadata_files(root):
        return "dfdc"
    if is_folder(root):
        return "folder"
    raise DatasetError(f"cannot tell the dataset layout of {root}: expected {EXPECTED}; found {describe(root)}. "
                       "Name the layout with --dataset if the markers are elsewhere")
