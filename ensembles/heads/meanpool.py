"""``meanpool``: the frame-level baseline. Order-blind by construction, so any temporal head must beat it."""
from __future__ import annotations

import torch
from torch import nn

from ensembles.heads.base import Head
from ensembles.heads.masked import masked_mean
from ensembles.registry import register_head


@register_head("meanpool")
class MeanPool(Head):
    """Masked mean of the frame features, then one linear layer."""

    def __init__(self, in_dim: int = 2048, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, 2)

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask)                      # (B, D)

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(pooled))             # (B, 2)

    def frame_logits(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, 2) of each frame alone (0 on masked frames). The classifier is linear, so a video's
        logits are exactly the mean of its valid frames' logits: the frame scores are the model's own."""
        keep = mask.bool().unsqueeze(-1)                                       # (B, T, 1)
        logits = self.fc(torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)))   # (B, T, 2)
        return torch.where(keep, logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
