"""Celeb-DF v2 layout (https://github.com/yuezunli/celeb-deepfakeforensics, Li et al. 2020).

    ROOT/Celeb-real/id0_0000.mp4              real, group "id0" (celebrity id)
    ROOT/YouTube-real/00000.mp4               real, its own group (no identity published)
    ROOT/Celeb-synthesis/id0_id16_0000.mp4    fake: video id0_0000 with id16's face -> group "id0"
    ROOT/List_of_testing_videos.txt           official test list, lines "<n> <path>" with 1 = real, 0 = fake

The official test list is not identity-disjoint from the other videos (its 518 videos cover nearly every
celebrity). With ``--celebdf-split official`` (default) the test split is exactly that list, and the other
videos of its celebrities are left out so no identity spans two splits: right for cross-dataset testing.
``--celebdf-split identity`` ignores the list and splits every video by celebrity, for training on Celeb-DF.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from pipeline.datasets.config import DatasetConfig
from pipeline.datasets.entry import OFFICIAL, DatasetError, VideoEntry, absolute, relative_id
from pipeline.core.videos import find_video_files
from pipeline.datasets.files import describe
from pipeline.datasets.registry import Scan, register_adapter

log = logging.getLogger(__name__)

CELEB_REAL, YOUTUBE_REAL, SYNTHESIS = "Celeb-real", "YouTube-real", "Celeb-synthesis"
TEST_LIST = "List_of_testing_videos.txt"
_REAL_NAME = re.compile(r"^(id\d+)_\d+$")            # id0_0000
_FAKE_NAME = re.compile(r"^(id\d+)_id\d+_\d+$")      # id0_id16_0000: target celebrity first


def is_celebdf(root: Path) -> bool:
    return (root / CELEB_REAL).is_dir() or (root / SYNTHESIS).is_dir()


def _entry(root: Path, path: Path) -> VideoEntry:
    """Label, group and method of one Celeb-DF file from its folder and name (the layout's own rules)."""
    vid = relative_id(path, root)
    folder = vid.split("/", 1)[0]
    if folder == YOUTUBE_REAL:
        return VideoEntry(vid, absolute(path), 0, "", vid)
    if folder not in (CELEB_REAL, SYNTHESIS):
        raise DatasetError(f"{vid}: not in {CELEB_REAL}/, {YOUTUBE_REAL}/ or {SYNTHESIS}/")
    pattern, label, method = (_REAL_NAME, 0, "") if folder == CELEB_REAL else (_FAKE_NAME, 1, SYNTHESIS)
    m = pattern.match(path.stem)
    if m is None:
        example = "id0_0000.mp4" if label == 0 else "id0_id16_0000.mp4"
        raise DatasetError(f"{vid}: name does not follow Celeb-DF's naming ({folder}/{example}), so its "
                           "celebrity (group) is unknown")
    return VideoEntry(vid, absolute(path), label, "", m.group(1), method)


def read_test_list(path: Path) -> list[str]:
    """Relative paths in ``List_of_testing_videos.txt``; checks the numbers against the folders (1 = real)."""
    rels, disagree = [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise DatasetError(f"{path}, line {n}: expected '<1 real | 0 fake> <relative path>', got {line!r}")
        rel = parts[1].strip().replace("\\", "/")
        if parts[0] != ("0" if rel.startswith(SYNTHESIS + "/") else "1"):
            disagree.append(n)
        rels.append(rel)
    if disagree:
        how = "all lines use 0 = real" if len(disagree) == len(rels) else f"{len(disagree)} line(s), e.g. " \
              f"line {disagree[0]}, disagree"
        log.warning("%s: %s; labels are taken from the folders (Celeb-synthesis = fake)", path, how)
    return rels


@register_adapter("celebdf")
def scan_celebdf(root: Path, cfg: DatasetConfig) -> Scan:
    if not is_celebdf(root):
        raise DatasetError(f"not a Celeb-DF v2 root: expected {CELEB_REAL}/, {YOUTUBE_REAL}/ and {SYNTHESIS}/ "
                           f"in {root}; found {describe(root)}")
    entries = [_entry(root, p) for folder in (CELEB_REAL, YOUTUBE_REAL, SYNTHESIS) if (root / folder).is_dir()
               for p in find_video_files(root / folder, cfg.video_exts, recursive=False)]
    if not entries:
        raise DatasetError(f"no videos ({', '.join(cfg.video_exts)}) in {root}/{CELEB_REAL}, {YOUTUBE_REAL} "
                           f"or {SYNTHESIS}")
    if cfg.celebdf_split == "identity":
        return Scan(entries)
    if not (root / TEST_LIST).is_file():
        log.info("Celeb-DF: no %s in %s; using the seeded split by celebrity", TEST_LIST, root)
        return Scan(entries)
    return Scan(_official_test(root, entries, read_test_list(root / TEST_LIST)))


def _official_test(root: Path, entries: list[VideoEntry], listed: list[str]) -> list[VideoEntry]:
    """Listed videos -> test (missing files kept as entries); unlisted videos of test groups left out."""
    by_id = {e.video_id: e for e in entries}
    test = []
    for rel in dict.fromkeys(listed):
        e = by_id.pop(rel, None) or _entry(root, root / rel)   # listed but absent: kept, stage one records it
        test.append(VideoEntry(e.video_id, e.path, e.label, "test", e.group, e.method, OFFICIAL))
    test_groups = {e.group for e in test}
    rest = [e for e in by_id.values() if e.group not in test_groups]
    dropped = len(by_id) - len(rest)
    if dropped:
        shared = len(test_groups & {e.group for e in by_id.values()})
        log.warning("Celeb-DF: the official test list shares %d identities with %d other videos; those videos "
                    "are left out so no identity spans two splits (use --celebdf-split identity to split "
                    "every video by celebrity instead)", shared, dropped)
    return test + rest
