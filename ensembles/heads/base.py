"""What every head is: features (B, T, D) + mask (B, T) -> pooled (B, F) -> logits (B, 2)."""
from __future__ import annotations

import torch
from torch import nn


class Head(nn.Module):
    """Base of the registered heads.

    Like timm's models, a head splits into ``forward_features`` (the temporal model and pooling, which
    honours the mask) and ``forward_head`` (the classifier on the pooled vector). Logits are [real, fake].
    """

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) float, mask (B, T) bool -> logits (B, 2)."""
        mask = mask.bool()
        logits = self.forward_head(self.forward_features(x, mask))   # (B, 2)
        # A video without one valid frame has no evidence either way: logits 0, i.e. probability 0.5.
        return torch.where(mask.any(1, keepdim=True), logits, torch.zeros((), dtype=logits.dtype,
                                                                            device=logits.device))
