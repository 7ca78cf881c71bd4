"""Masked sequence operations shared by the heads: a frame whose mask is False must never count.

A False mask marks a sampled frame without a face crop (or a slot past a short video's end); its features
are meaningless, and may sit anywhere in the sequence, not only at the end. The recurrent heads therefore
*compact* each sequence, moving the valid frames to the front in their original order, and run a packed
sequence over exactly those frames.

ONNX export cannot trace a packed sequence. Inside ``with unrolled_rnn():`` the recurrent nets run instead as
an explicit loop over the T steps whose state moves on only at valid steps (``_unrolled``): the same frames
count, in the same order, in both directions, so the outputs equal the packed ones up to float rounding
(tests/test_export.py checks every head on masks with gaps, short rows and empty rows).
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

_UNROLLED = contextvars.ContextVar("unrolled_rnn", default=False)


@contextmanager
def unrolled_rnn() -> Iterator[None]:
    """Run the heads' recurrent nets as traceable loops (for ``torch.onnx.export``) within this block."""
    token = _UNROLLED.set(True)
    try:
        yield
    finally:
        _UNROLLED.reset(token)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid steps: x (B, T, D), mask (B, T) -> (B, D); zeros for a row with no valid step."""
    total = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(1)
    return total / mask.sum(1, keepdim=True).clamp_min(1).to(x.dtype)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over valid steps: scores (B, T) -> weights (B, T), exactly 0 on masked steps.

    A row with no valid step gets all-zero weights; it is softmaxed over every step first so that no NaN
    appears, even in the backward pass.
    """
    usable = mask | ~mask.any(-1, keepdim=True)
    weights = scores.masked_fill(~usable, float("-inf")).softmax(-1)
    return weights * mask


def compact(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move valid steps to the front, keeping their order.

    x (B, T, D), mask (B, T) -> x_c (B, T, D), lengths (B,) valid steps per row, order (B, T) where
    ``order[b, j]`` is the original position of compacted step j.
    """
    # The stable sort of ~mask, by ranks (exportable: ONNX's TopK is not stable): valid step t goes to slot
    # (valid steps before it), invalid step t to slot lengths + (invalid steps before it).
    m = mask.long()                                                        # (B, T)
    lengths = m.sum(1)                                                     # (B,)
    rank = torch.where(mask, m.cumsum(1) - 1, lengths.unsqueeze(1) + (1 - m).cumsum(1) - 1)   # (B, T)
    steps = torch.arange(mask.shape[1], device=mask.device).expand_as(rank)
    order = torch.zeros_like(rank).scatter(1, rank, steps)                 # (B, T) inverse permutation
    x_c = torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))
    return x_c, lengths, order


def uncompact(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-step values (B, T) in compacted order -> the same values at the original frame positions."""
    return torch.zeros_like(values).scatter(1, order, values)


def run_rnn(rnn: nn.RNNBase, x: torch.Tensor, mask: torch.Tensor):
    """Run ``rnn`` (batch_first) over the valid steps of each row only.

    Returns outputs (B, T, dirs * H) in compacted order (zeros past each row's length), the final hidden
    state h_n (layers * dirs, B, H) taken at each row's last valid step, lengths (B,) and order (B, T).
    A row with no valid step runs over one step of padding; ``Head.forward`` discards its logits.
    """
    x_c, lengths, order = compact(x, mask)
    if _UNROLLED.get():
        out, h_n = _unrolled(rnn, x_c, step_mask(lengths, x.shape[1]))
        return out, h_n, lengths, order
    packed = pack_padded_sequence(x_c, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h_n = state[0] if isinstance(state, tuple) else state   # LSTM returns (h_n, c_n)
    return out, h_n, lengths, order


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) mask of the compacted layout (first ``length`` steps valid)."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def _cell(rnn: nn.RNNBase, xi: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_hh: torch.Tensor,
          b_hh: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of torch's LSTM (gates i, f, g, o) or GRU (r, z, n) cell; ``xi`` = W_ih x + b_ih."""
    gh = F.linear(h, w_hh, b_hh)
    if isinstance(rnn, nn.LSTM):
        i, f, g, o = (xi + gh).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    xr, xz, xn = xi.chunk(3, -1)
    hr, hz, hn = gh.chunk(3, -1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h, c


def _unrolled(rnn: nn.RNNBase, x_c: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``rnn`` (LSTM or GRU, batch_first, eval mode) over compacted steps, moving the state only where
    ``valid`` (B, T): what a packed sequence computes. The reverse direction starts from a zero state and
    skips the invalid tail, so it begins at each row's last valid step, as packing does. Returns outputs
    (B, T, dirs * H), zero at invalid steps, and h_n (layers * dirs, B, H)."""
    if not isinstance(rnn, (nn.LSTM, nn.GRU)) or getattr(rnn, "proj_size", 0) or not rnn.batch_first:
        raise TypeError(f"cannot unroll {rnn}: only batch_first LSTM/GRU without projections")
    B, T, _ = x_c.shape
    layer_in, finals = x_c, []
    for layer in range(rnn.num_layers):
        outs = []
        for reverse in ((False, True) if rnn.bidirectional else (False,)):
            sfx = f"_l{layer}" + ("_reverse" if reverse else "")
            b_ih, b_hh = (getattr(rnn, f"bias_ih{sfx}"), getattr(rnn, f"bias_hh{sfx}")) if rnn.bias else (None, None)
            xi = F.linear(layer_in, getattr(rnn, f"weight_ih{sfx}"), b_ih)          # (B, T, gates * H)
            h = c = x_c.new_zeros(B, rnn.hidden_size)                               # (B, H)
            ys: list[torch.Tensor] = [h] * T
            for t in (range(T - 1, -1, -1) if reverse else range(T)):
                keep = valid[:, t:t + 1]                                            # (B, 1)
                h_new, c_new = _cell(rnn, xi[:, t], h, c, getattr(rnn, f"weight_hh{sfx}"), b_hh)
                h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
                ys[t] = torch.where(keep, h, torch.zeros((), dtype=h.dtype, device=h.device))
            outs.append(torch.stack(ys, 1))                                         # (B, T, H)
            finals.append(h)
        layer_in = torch.cat(outs, -1)                                              # (B, T, dirs * H)
    return layer_in, torch.stack(finals)
