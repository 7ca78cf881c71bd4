"""Box arithmetic of the MTCNN cascade, vectorised over every candidate of every frame.

The conventions (the ``+ 1`` in widths, the 1-based crop origin, truncation before cropping) are those of the
original MTCNN code as carried over by facenet-pytorch, so boxes and probabilities agree with that reference
(the parity tests check it). Rows of a candidate tensor are ``(x1, y1, x2, y2, score)`` plus whatever the
stage needs; a separate ``frame`` tensor says which frame each row belongs to.
"""
from __future__ import annotations

import functools
import glob
import importlib.util
import os

import torch

_STRIDE, _CELL = 2, 12      # P-Net looks at a 12x12 window every 2 px of the pyramid level


def pyramid_scales(h: int, w: int, min_face: float, factor: float) -> list[float]:
    """Scales at which a ``min_face`` face becomes P-Net's 12 px window, down to a 12 px short side."""
    m = 12.0 / min_face
    min_side = min(h, w) * m
    scales = []
    scale = m
    while min_side >= 12:
        scales.append(scale)
        scale *= factor
        min_side *= factor
    return scales


def level_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return int(h * scale + 1), int(w * scale + 1)


def pnet_candidates(reg: torch.Tensor, prob: torch.Tensor, scale: float, threshold: float,
                    origin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """P-Net maps -> candidate windows in detection-image pixels.

    reg (N, 4, h, w), prob (N, h, w) -> rows (n, 9) = (x1, y1, x2, y2, score, dx1, dy1, dx2, dy2), frame (n,).
    ``origin`` (N, 2): x, y of each map's first cell on the whole level's grid, when the maps were computed
    on windows of the level (``level_windows``); the frame returned is then the index of the map.
    """
    mask = prob >= threshold
    where = mask.nonzero()                                   # (n, 3): frame, y, x
    frame = where[:, 0]
    score = prob[mask]
    offsets = reg.permute(0, 2, 3, 1)[mask]                  # (n, 4)
    cell = where[:, 1:].flip(1)                              # (n, 2): x, y of the window on the level
    if origin is not None:
        cell = cell + origin[frame]
    cell = cell.to(reg.dtype)
    q1 = ((_STRIDE * cell + 1) / scale).floor()
    q2 = ((_STRIDE * cell + _CELL - 1 + 1) / scale).floor()
    return torch.cat([q1, q2, score[:, None], offsets], dim=1), frame


@functools.cache
def _nms_op():
    """torchvision's compiled NMS kernel (``torch.ops.torchvision.nms``), loaded from its extension library
    without importing the torchvision package: that import costs about 1.4 s of start-up on 2 cores (its
    ``ops`` import ``torch._dynamo``), for one kernel. If the library is not where it should be, the package
    is imported after all, which registers the same kernel."""
    spec = importlib.util.find_spec("torchvision")
    libs = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))) if spec else []
    try:
        torch.ops.load_library(libs[0])
        return torch.ops.torchvision.nms
    except (IndexError, OSError, RuntimeError):
        import torchvision  # noqa: F401
        return torch.ops.torchvision.nms


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float) -> torch.Tensor:
    """IoU NMS within each group, indices best first: torchvision.ops.batched_nms's two strategies (over
    1,000 boxes on the CPU, 5,000 on a GPU, one kernel call per group; else one call with each group's
    boxes shifted apart), so results equal its own."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 20000):
        keep = torch.zeros_like(scores, dtype=torch.bool)
        for g in torch.unique(groups):
            idx = torch.where(groups == g)[0]
            keep[idx[_nms_op()(boxes[idx], scores[idx], iou)]] = True
        idx = torch.where(keep)[0]
        return idx[scores[idx].sort(descending=True)[1]]
    shift = groups.to(boxes) * (boxes.max() + 1)
    return _nms_op()(boxes + shift[:, None], scores, iou)


def nms(rows: torch.Tensor, frame: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices kept by IoU NMS within each frame, best first.

    Float64 so that torchvision's per-frame coordinate offset does not round the boxes: a frame's result
    is then the same whether it was detected alone or in a batch.
    """
    return batched_nms(rows[:, :4].double(), rows[:, 4].double(), frame, iou)


def nms_min(rows: torch.Tensor, frame: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS on intersection over the *smaller* box, per frame: MTCNN's last step ("Min").

    torchvision only has IoU NMS. Greedy suppression is the unique fixed point of "keep a box unless a kept,
    better box of its frame overlaps it", so iterating that rule from "keep all" reaches it in a few
    vectorised passes (at most as many as the longest suppression chain), with no loop per box.
    """
    order = torch.argsort(rows[:, 4], descending=True, stable=True)
    b, f = rows[order, :4], frame[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])      # (n, n, 2)
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt + 1).clamp(min=0).prod(dim=2)
    overlap = inter / torch.minimum(area[:, None], area[None, :])
    n = len(b)
    earlier = torch.ones(n, n, dtype=torch.bool, device=b.device).triu(1)   # [i, j]: i ranks above j
    suppresses = earlier & (f[:, None] == f[None, :]) & (overlap > threshold)
    keep = torch.ones(n, dtype=torch.bool, device=b.device)
    for _ in range(n):
        new = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep]


def apply_offsets(boxes: torch.Tensor, offsets: torch.Tensor, plus_one: bool = True) -> torch.Tensor:
    """Move (n, 4) boxes by regression offsets (n, 4) given as fractions of the box width and height."""
    w = boxes[:, 2] - boxes[:, 0] + (1 if plus_one else 0)
    h = boxes[:, 3] - boxes[:, 1] + (1 if plus_one else 0)
    return torch.stack([boxes[:, 0] + offsets[:, 0] * w, boxes[:, 1] + offsets[:, 1] * h,
                        boxes[:, 2] + offsets[:, 2] * w, boxes[:, 3] + offsets[:, 3] * h], dim=1)


def square(boxes: torch.Tensor) -> torch.Tensor:
    """(n, 4) boxes -> squares of side max(w, h) on the same centre."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def crop_windows(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, 4) float boxes -> (n, 4) int64 pixel ranges (y0, y1, x0, x1), half-open, clipped to the image.

    Truncation and the 1-based origin follow the original code: rows ``y - 1 .. ey - 1`` of the image.
    """
    b = boxes.trunc().long()
    x0 = b[:, 0].clamp(min=1) - 1
    y0 = b[:, 1].clamp(min=1) - 1
    x1 = b[:, 2].clamp(max=w)
    y1 = b[:, 3].clamp(max=h)
    return torch.stack([y0, y1, x0, x1], dim=1)


def empty_integral_image(images: torch.Tensor) -> torch.Tensor:
    """Storage for the summed-area table of (B, H, W, C) uint8 images: (B, H+1, W+1, C), zero borders.

    int32 holds any frame up to 8.4 Mpx exactly (255 * H * W < 2**31); int64 beyond that.
    """
    bsz, h, w, c = images.shape
    dtype = torch.int32 if 255 * h * w < 2 ** 31 else torch.int64
    table = torch.empty(bsz, h + 1, w + 1, c, dtype=dtype, device=images.device)
    table[:, 0] = 0                 # only the borders: fill_integral_image writes the rest
    table[:, :, 0] = 0
    return table


def fill_integral_image(table: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """table[:, i+1, j+1] = sum of images[:, :i+1, :j+1], exact in integers; in place (3x faster here than
    ``images.cumsum(1, dtype=...)`` into a new tensor). Frame by frame: a frame's table stays in cache between
    the two sums (16 frames at 960x540, fresh storage: 110 ms so, 190 ms all at once)."""
    for i in range(len(table)):
        inner = table[i, 1:, 1:]
        inner.copy_(images[i])
        torch.cumsum(inner, 0, out=inner)
        torch.cumsum(inner, 1, out=inner)
    return table


def integral_image(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, H+1, W+1, C) summed-area table."""
    return fill_integral_image(empty_integral_image(images), images)


def _bin_edges(start: torch.Tensor, stop: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool bins of [start, stop) into ``size`` parts: (n, size) first and end rows.

    Same integer formulas as torch's adaptive_avg_pool2d (``interpolate(mode="area")``):
    floor(i * L / size) and ceil((i + 1) * L / size).
    """
    length = (stop - start)[:, None]                                  # (n, 1)
    i = torch.arange(size, device=start.device)[None, :]              # (1, size)
    first = (i * length) // size
    end = ((i + 1) * length + size - 1) // size
    return start[:, None] + first, start[:, None] + end


def area_crops(table: torch.Tensor, frame: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """Every window resized to size x size by area averaging, in one gather from the summed-area table.

    table (B, H+1, W+1, C), frame (n,), windows (n, 4) = (y0, y1, x0, x1) -> (n, C, size, size) float32,
    channels_last. Equal to ``interpolate(image[y0:y1, x0:x1], (size, size), mode="area")`` per window
    (the reference's crop step) up to float rounding of the final division.
    """
    _, hp, wp, c = table.shape
    flat = table.reshape(-1, c)                                       # (B*(H+1)*(W+1), C)
    r0, r1 = _bin_edges(windows[:, 0], windows[:, 1], size)           # (n, size) rows
    c0, c1 = _bin_edges(windows[:, 2], windows[:, 3], size)           # (n, size) columns
    base = (frame * hp * wp)[:, None, None]

    def corner(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        index = (base + rows[:, :, None] * wp + cols[:, None, :]).reshape(-1)
        return flat.index_select(0, index).view(-1, size, size, c)  # (n, size, size, C); 2x faster than []

    sums = corner(r1, c1) - corner(r0, c1) - corner(r1, c0) + corner(r0, c0)
    count = ((r1 - r0)[:, :, None] * (c1 - c0)[:, None, :])[..., None]
    means = sums.to(torch.float32) / count.to(torch.float32)          # (n, size, size, C)
    return means.permute(0, 3, 1, 2)                                  # NCHW view of NHWC memory


def level_bins(table: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """First and end rows (h,), (h,) and columns (w,), (w,) of a whole-frame pyramid level's area bins."""
    _, hp, wp, _ = table.shape
    whole = torch.tensor([[0, hp - 1, 0, wp - 1]], device=table.device)   # the frame as one window
    (r0,), (r1,) = _bin_edges(whole[:, 0], whole[:, 1], size[0])
    (c0,), (c1,) = _bin_edges(whole[:, 2], whole[:, 3], size[1])
    return r0, r1, c0, c1


def level_windows(table: torch.Tensor, bins: tuple[torch.Tensor, ...], frame: torch.Tensor,
                  origin: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Windows of a pyramid level, cut from the summed-area table without making the whole level.

    bins: ``level_bins`` of the level; frame (n,); origin (n, 2) = (row, col) of each window's first level
    pixel; size (h, w) of every window (inside the level). -> (n, C, h, w) float32 channels_last: the same
    numbers as ``area_level(table[frame], ...)[:, :, r:r + h, c:c + w]`` (same integer sums, same scaling).
    """
    _, hp, wp, c = table.shape
    r0, r1, c0, c1 = bins
    rows = origin[:, :1] + torch.arange(size[0], device=table.device)      # (n, h) level rows
    cols = origin[:, 1:] + torch.arange(size[1], device=table.device)      # (n, w) level columns
    flat = table.reshape(-1, c)
    base = (frame * hp * wp)[:, None, None]

    def corner(rr: torch.Tensor, cc: torch.Tensor) -> torch.Tensor:
        index = (base + rr[:, :, None] * wp + cc[:, None, :]).reshape(-1)
        return flat.index_select(0, index).view(-1, size[0], size[1], c)

    ra, rb, ca, cb = r0[rows], r1[rows], c0[cols], c1[cols]
    sums = corner(rb, cb).sub_(corner(ra, cb)).sub_(corner(rb, ca)).add_(corner(ra, ca))
    inv_count = 1.0 / ((rb - ra)[:, :, None] * (cb - ca)[:, None, :]).to(torch.float32)   # (n, h, w)
    return sums.to(torch.float32).mul_(inv_count[..., None]).permute(0, 3, 1, 2)


def area_level(table: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A pyramid level cut from the summed-area table: (B, H+1, W+1, C) -> (B, C, h, w) float32.

    Equal to ``interpolate(images, size, mode="area")`` (the reference's pyramid) up to float rounding of
    the final scaling, at ~4x less cost here: two row selections, two column selections, one product.
    The result is an NCHW view of NHWC memory, i.e. channels_last, which P-Net wants.
    """
    _, hp, wp, _ = table.shape
    whole = torch.tensor([[0, hp - 1, 0, wp - 1]], device=table.device)   # the frame as one window
    (r0,), (r1,) = _bin_edges(whole[:, 0], whole[:, 1], size[0])
    (c0,), (c1,) = _bin_edges(whole[:, 2], whole[:, 3], size[1])
    rows = table.index_select(1, r1).sub_(table.index_select(1, r0))       # (B, h, W+1, C) row-bin sums
    sums = rows.index_select(2, c1).sub_(rows.index_select(2, c0))         # (B, h, w, C)
    inv_count = 1.0 / ((r1 - r0)[:, None] * (c1 - c0)[None, :]).to(torch.float32)   # (h, w)
    return sums.to(torch.float32).mul_(inv_count[None, :, :, None]).permute(0, 3, 1, 2)
