"""Masked sequence operations shared by the heads: a frame whose mask is False must never count.

A False mask marks a sampled frame without a face crop (or a slot past a short video's end); its features
are meaningless, and may sit anywhere in the sequence, not only at the end. The recurrent heads therefore
*compact* each sequence, moving the valid frames to the front in their original order, and run a packed
sequence over exactly those frames.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


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
    _, order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True)   # valid (0) before invalid (1)
    x_c = torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))
    return x_c, mask.sum(1), order


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
    packed = pack_padded_sequence(x_c, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h_n = state[0] if isinstance(state, tuple) else state   # LSTM returns (h_n, c_n)
    return out, h_n, lengths, order


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) mask of the compacted layout (first ``length`` steps valid)."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
