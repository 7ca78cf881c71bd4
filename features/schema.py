"""Layout of the HDF5 feature store (schema version 2; version 1 stores, without ``source``, are still read).

One file holds a fixed number of *rows* (its capacity); each video occupies one row of every dataset below.
All datasets are contiguous and allocated when the file is created, so extraction afterwards writes raw bytes
only and never touches HDF5's metadata (B-trees, heaps, attributes). That is what makes the file crash-safe:
a process killed at any moment leaves metadata that was complete at creation, and a row counts only once its
``status`` byte is written, after its data has been flushed. Growing the file (more videos than rows) is a
rewrite into a new file that replaces the old one atomically.

Per-row datasets (capacity N, frames T, feature dim D):
    features     (N, T, D) float16   ResNet50 pooled features of each sampled frame's face crop
    mask         (N, T)    bool      frame has a valid face crop (False: missing frame or no face)
    boxes        (N, T, 4) float32   face box x1, y1, x2, y2 in frame pixels (NaN when missing)
    probs        (N, T)    float32   detection probability (0 when missing)
    source       (N, T)    uint8     where the frame's box came from: 0 nowhere, 1 the face search, 2 the second
                                     look near the tracked subject (schema 2; see ``SOURCE_NAMES``)
    frame_index  (N, T)    int32     index of the sampled frame in the video (-1 when not sampled)
    timestamp    (N, T)    float64   seconds (NaN when not sampled)
    status       (N,)      uint8     0 empty, 1 ok, 2 no_face, 3 failed  (the commit marker)
    label        (N,)      int8      0 real, 1 fake, -1 unknown
    video_id, path, split, group, method, reason   (N,) fixed-width UTF-8 bytes
    video_frames (N,) int32, fps (N,) float32, width (N,) int32, height (N,) int32
    updated      ()        fixed-width bytes: ISO time of the last commit
    manifest_sha256 ()     fixed-width bytes: hash of the manifest of the latest run (saved beside the store)
File attributes: schema_version, provenance (JSON), identity (JSON), created.
"""
from __future__ import annotations

import h5py
import numpy as np

SCHEMA_VERSION = 2
READABLE = (1, 2)             # schema 1: the same layout without ``source``

EMPTY, OK, NO_FACE, FAILED = 0, 1, 2, 3
STATUS_NAMES = {EMPTY: "empty", OK: "ok", NO_FACE: "no_face", FAILED: "failed"}
STATUS_CODES = {v: k for k, v in STATUS_NAMES.items()}
DONE = (OK, NO_FACE)          # complete: skipped on rerun
NOWHERE, SEARCH, SECOND_LOOK = 0, 1, 2
SOURCE_NAMES = {NOWHERE: "none", SEARCH: "search", SECOND_LOOK: "second look"}
RANK = {EMPTY: 0, FAILED: 1, NO_FACE: 2, OK: 2}   # which of two rows of one video to keep
REASON_WIDTH = 240

# name -> (per-frame trailing shape or None for per-row, dtype, fill value or None for "never fill")
def frame_arrays(frames: int, dim: int) -> dict[str, tuple[tuple[int, ...], np.dtype, object]]:
    return {
        "features": ((frames, dim), np.dtype("<f2"), None),
        "mask": ((frames,), np.dtype("bool"), False),
        "boxes": ((frames, 4), np.dtype("<f4"), np.nan),
        "probs": ((frames,), np.dtype("<f4"), 0.0),
        "source": ((frames,), np.dtype("u1"), NOWHERE),
        "frame_index": ((frames,), np.dtype("<i4"), -1),
        "timestamp": ((frames,), np.dtype("<f8"), np.nan),
    }


ROW_NUMBERS = {
    "status": (np.dtype("u1"), EMPTY),
    "label": (np.dtype("i1"), -1),
    "video_frames": (np.dtype("<i4"), 0),
    "fps": (np.dtype("<f4"), 0.0),
    "width": (np.dtype("<i4"), 0),
    "height": (np.dtype("<i4"), 0),
}
ROW_TEXT = ("video_id", "path", "split", "group", "method", "reason")


def text_width(values, minimum: int = 32) -> int:
    """Bytes for a fixed-width text column: room for the longest value with slack, in steps of 32."""
    longest = max((len(v.encode("utf-8")) for v in values), default=0)
    need = max(minimum, int(longest * 1.25) + 1)
    return (need + 31) // 32 * 32


def _create(parent: h5py.File, name: str, shape: tuple[int, ...], dtype: np.dtype, fill) -> None:
    """A contiguous dataset whose space is allocated now (so later writes change raw bytes only)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    if fill is None:
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)   # features: every committed row is written in full
    else:
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
        dcpl.set_fill_value(np.array(fill, dtype=dtype))
    parent.create_dataset(name, shape=shape, dtype=dtype, dcpl=dcpl)


def create_layout(f: h5py.File, capacity: int, frames: int, dim: int, widths: dict[str, int]) -> None:
    for name, (shape, dtype, fill) in frame_arrays(frames, dim).items():
        _create(f, name, (capacity, *shape), dtype, fill)
    for name, (dtype, fill) in ROW_NUMBERS.items():
        _create(f, name, (capacity,), dtype, fill)
    for name in ROW_TEXT:
        width = REASON_WIDTH if name == "reason" else widths[name]
        _create(f, name, (capacity,), np.dtype(f"S{width}"), b"")
    _create(f, "updated", (), np.dtype("S40"), b"")
    _create(f, "manifest_sha256", (), np.dtype("S64"), b"")


def problem(f: h5py.File) -> str | None:
    """Why ``f`` is not a valid store of this schema, or None. Checked on every open (reader or writer), so a
    store that opens but holds bad values gives one line, not a traceback later."""
    import json
    version = f.attrs.get("schema_version")
    if version is None:
        return "an HDF5 file without a schema_version attribute (not a feature store)"
    try:
        if int(version) not in READABLE:
            return f"store schema {version}; this version reads schema {', '.join(map(str, READABLE))}"
    except (TypeError, ValueError):
        return f"schema_version {version!r} is not a number"
    for name in ("identity", "provenance"):
        try:
            value = json.loads(f.attrs[name])
        except KeyError:
            return f"no {name} attribute"
        except (TypeError, ValueError) as exc:
            return f"its {name} attribute is not JSON ({exc})"
        if not isinstance(value, dict):
            return f"its {name} attribute is not a JSON object"
    if "features" not in f or f["features"].ndim != 3:
        return "no (N, T, D) features dataset"
    capacity, frames, dim = f["features"].shape
    expected = {name: ((capacity, *shape), dtype) for name, (shape, dtype, _) in frame_arrays(frames, dim).items()}
    expected.update({name: ((capacity,), dtype) for name, (dtype, _) in ROW_NUMBERS.items()})
    if int(version) == 1:
        expected.pop("source")
    for name, (shape, dtype) in expected.items():
        if name not in f:
            return f"dataset {name!r} is missing"
        if f[name].shape != shape or f[name].dtype != dtype:
            return f"dataset {name!r} is {f[name].shape} {f[name].dtype}, expected {shape} {dtype}"
    for name in (*ROW_TEXT, "updated", "manifest_sha256"):
        if name not in f or f[name].dtype.kind != "S":
            return f"text dataset {name!r} is missing"
        if name in ROW_TEXT and f[name].shape != (capacity,):
            return f"dataset {name!r} has {f[name].shape} rows, expected {capacity}"
    bad = np.setdiff1d(np.unique(f["status"][:]), list(STATUS_NAMES))
    if bad.size:
        return f"status byte(s) {bad.tolist()} outside {sorted(STATUS_NAMES)}"
    return None


def encode(text: str, width: int) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) <= width:
        return raw
    return raw[:width].decode("utf-8", errors="ignore").encode("utf-8")   # cut on a character boundary


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
