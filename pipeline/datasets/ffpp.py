"""FaceForensics++ layout (https://github.com/ondyari/FaceForensics, Rössler et al. 2019).

    ROOT/original_sequences/youtube/<c>/videos/000.mp4                 real, group "000"
    ROOT/manipulated_sequences/<method>/<c>/videos/000_003.mp4          fake made from 000 -> group "000"
    ROOT/original_sequences/actors/<c>/videos/01__scene.mp4             DeepFakeDetection real, "actors/01"
    ROOT/manipulated_sequences/DeepFakeDetection/<c>/videos/01_02__scene__ID.mp4   fake, "actors/01"
    ROOT/splits/{train,val,test}.json                                   official pair lists (optional)

A fake ``A_B`` is target video ``A`` with ``B``'s face or expressions, so it belongs to ``A``'s group; ``A`` and
``B`` are also linked so the seeded split keeps them together, as the official pair splits do.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from pipeline.datasets.config import DatasetConfig
from pipeline.datasets.entry import OFFICIAL, SPLITS, DatasetError, VideoEntry, absolute, relative_id
from pipeline.core.videos import find_video_files
from pipeline.datasets.files import describe
from pipeline.datasets.registry import Scan, register_adapter

log = logging.getLogger(__name__)

ORIGINALS, MANIPULATED = "original_sequences", "manipulated_sequences"
DFD = "DeepFakeDetection"
_PAIR = re.compile(r"^([^_]+)_([^_]+)$")            # 000_003
_DFD_FAKE = re.compile(r"^([^_]+)_([^_]+)__.+$")     # 01_02__exit_phone_room__YVGY8LOK
_DFD_REAL = re.compile(r"^([^_]+)__.+$")             # 01__exit_phone_room


def is_ffpp(root: Path) -> bool:
    return (root / ORIGINALS).is_dir() and (root / MANIPULATED).is_dir()


def _videos(root: Path, *parts: str) -> Path:
    return root.joinpath(*parts, "videos")


def read_official_splits(root: Path) -> dict[str, str]:
    """``splits/{train,val,test}.json`` -> {original or fake stem: split}; {} when absent.

    Each file lists pairs ``[A, B]``: originals A and B and fakes A_B and B_A belong to that split.
    """
    owner: dict[str, str] = {}
    for split in SPLITS:
        path = root / "splits" / f"{split}.json"
        if not path.is_file():
            continue
        try:
            pairs = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path}: cannot read the FF++ split file ({exc})") from exc
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise DatasetError(f"{path}: expected a JSON list of [A, B] pairs like [[\"071\", \"054\"], ...]")
        for a, b in pairs:
            a, b = str(a), str(b)
            for key in (a, b, f"{a}_{b}", f"{b}_{a}"):
                if owner.get(key, split) != split:
                    raise DatasetError(f"{path}: {key} is also in splits/{owner[key]}.json")
                owner[key] = split
    return owner


def _parse(stems: list[Path], pattern: re.Pattern, example: str, folder: Path) -> list[re.Match]:
    matches = [pattern.match(p.stem) for p in stems]
    bad = [p.name for p, m in zip(stems, matches) if m is None]
    if bad:
        raise DatasetError(f"{folder}: {len(bad)} file name(s) do not follow the FF++ naming ({example}): "
                           f"{', '.join(bad[:5])}")
    return matches


def _originals(root: Path, kind: str, c: str, exts, dfd: bool) -> list[VideoEntry]:
    folder = _videos(root, ORIGINALS, kind, c)
    paths = find_video_files(folder, exts)
    if dfd:
        groups = [f"actors/{m.group(1)}" for m in _parse(paths, _DFD_REAL, "01__scene.mp4", folder)]
    else:
        groups = [p.stem for p in paths]
    return [VideoEntry(relative_id(p, root), absolute(p), 0, "", g) for p, g in zip(paths, groups)]


def _fakes(root: Path, method: str, c: str, exts) -> tuple[list[VideoEntry], list[tuple[str, str]]]:
    folder = _videos(root, MANIPULATED, method, c)
    paths = find_video_files(folder, exts)
    if method == DFD:
        matches = _parse(paths, _DFD_FAKE, "01_02__scene__ID.mp4", folder)
        groups = [f"actors/{m.group(1)}" for m in matches]
        # No links: DFD actors swap with many others, so linking would merge every actor into one group.
        links = []
    else:
        matches = _parse(paths, _PAIR, "TARGET_SOURCE like 000_003.mp4", folder)
        groups = [m.group(1) for m in matches]
        links = [(m.group(1), m.group(2)) for m in matches]
    entries = [VideoEntry(relative_id(p, root), absolute(p), 1, "", g, method) for p, g in zip(paths, groups)]
    return entries, links


def _selected_methods(root: Path, cfg: DatasetConfig) -> list[str]:
    c = cfg.ffpp_compression
    present = sorted(p.name for p in (root / MANIPULATED).iterdir() if p.is_dir())
    chosen = [m for m in cfg.ffpp_methods if _videos(root, MANIPULATED, m, c).is_dir()]
    skipped = [m for m in cfg.ffpp_methods if m not in chosen]
    if not chosen:
        raise DatasetError(f"no FaceForensics++ method folder with {c}/videos under {root / MANIPULATED}: "
                           f"expected one of {', '.join(cfg.ffpp_methods)}; found {', '.join(present) or 'none'}")
    if skipped:
        log.info("FF++: methods not present for %s, skipped: %s", c, ", ".join(skipped))
    return chosen


@register_adapter("ffpp")
def scan_ffpp(root: Path, cfg: DatasetConfig) -> Scan:
    if not is_ffpp(root):
        raise DatasetError(f"not a FaceForensics++ root: expected {ORIGINALS}/ and {MANIPULATED}/ in {root}; "
                           f"found {describe(root)}")
    c = cfg.ffpp_compression
    if not _videos(root, ORIGINALS, "youtube", c).is_dir():
        raise DatasetError(f"no FaceForensics++ originals for compression {c}: expected "
                           f"{_videos(root, ORIGINALS, 'youtube', c)}; found {ORIGINALS}/youtube/ holding "
                           f"{describe(root / ORIGINALS / 'youtube')}")
    methods = _selected_methods(root, cfg)
    entries = _originals(root, "youtube", c, cfg.video_exts, dfd=False)
    links: list[tuple[str, str]] = []
    if DFD in methods:
        if _videos(root, ORIGINALS, "actors", c).is_dir():
            entries += _originals(root, "actors", c, cfg.video_exts, dfd=True)
        else:
            log.warning("FF++: %s fakes without their originals (%s missing)", DFD,
                        _videos(root, ORIGINALS, "actors", c))
    for method in methods:
        fakes, method_links = _fakes(root, method, c, cfg.video_exts)
        entries += fakes
        links += method_links
    return Scan(_apply_official(root, entries), links)


def _apply_official(root: Path, entries: list[VideoEntry]) -> list[VideoEntry]:
    owner = read_official_splits(root)
    if not owner:
        log.info("FF++: no splits/{train,val,test}.json in %s; using the seeded group-aware split", root)
        return entries
    out = []
    for e in entries:
        split = "" if e.group.startswith("actors/") else owner.get(Path(e.video_id).stem, "")
        out.append(VideoEntry(e.video_id, e.path, e.label, split, e.group, e.method, OFFICIAL if split else ""))
    uncovered = sum(1 for e in out if not e.split)
    if uncovered:
        log.info("FF++: %d video(s) not in the official split files (e.g. DeepFakeDetection) get the seeded "
                 "group-aware split", uncovered)
    return out
