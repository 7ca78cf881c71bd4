"""``framelinear``: a per-frame linear classifier whose video score is the mean of its frame scores.

This is the frame-level protocol of DeepfakeBench and of most image detectors applied to video: every frame
is classified on its own and the video's probability of fake is the mean of the frames' probabilities.
Unlike ``meanpool`` (which averages features, then classifies), the average is taken over probabilities,
so one confident frame moves the video less than it moves a feature mean.
"""
from __future__ import annotations

import torch
from torch import nn

from ensembles.heads.base import Head
from ensembles.registry import register_head


@register_head("framelinear")
class FrameLinear(Head):
    """One linear layer on every frame; video probability = mean of the valid frames' probabilities."""

    def __init__(self, in_dim: int = 2048, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, 2)

    def frame_logits(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, 2) of each frame (0 on masked frames, whose values never reach the classifier)."""
        keep = mask.bool().unsqueeze(-1)                                       # (B, T, 1)
        x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        logits = self.fc(self.dropout(x))                                      # (B, T, 2)
        return torch.where(keep, logits, torch.zeros((), dtype=logits.dtype, device=logits.device))

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log of the mean of the valid frames' softmax (B, 2): the video's log-probabilities."""
        mask = mask.bool()
        usable = mask | ~mask.any(1, keepdim=True)     # a video without frames: any finite value (discarded)
        logp = self.frame_logits(x, mask).log_softmax(-1)                      # (B, T, 2)
        logp = logp.masked_fill(~usable.unsqueeze(-1), float("-inf"))
        return torch.logsumexp(logp, dim=1) - usable.sum(1, keepdim=True).to(logp.dtype).log()

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled          # log-probabilities are logits: softmax gives the mean frame probabilities back


__all__ = ["FrameLinear"]
