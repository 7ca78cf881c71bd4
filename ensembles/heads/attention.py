"""``bilstm-attn`` and ``bigru-attn``: 2-layer bidirectional RNN, attention pooling over valid frames, an MLP.

Attention pooling is the additive form of Yang et al., "Hierarchical Attention Networks for Document
Classification" (NAACL 2016, https://aclanthology.org/N16-1174/): score_t = v^T tanh(W h_t + b), softmax
over the valid frames, pooled = sum_t a_t h_t. The per-frame weights a_t are what ``attention`` returns for
explanations. Sizes default to the attention-ensemble seed (hidden 768; its second Bi-LSTM used 512).
"""
from __future__ import annotations

import torch
from torch import nn

from ensembles.heads.base import Head
from ensembles.heads.masked import masked_softmax, run_rnn, step_mask, uncompact
from ensembles.registry import register_head


class AttentionHead(Head):
    cell: type[nn.RNNBase] = nn.LSTM

    def __init__(self, in_dim: int = 2048, hidden: int = 768, layers: int = 2, attn_dim: int = 128,
                 fc: int = 256, dropout: float = 0.5):
        super().__init__()
        self.rnn = self.cell(in_dim, hidden, layers, batch_first=True, bidirectional=True,
                             dropout=dropout if layers > 1 else 0.0)
        self.score = nn.Sequential(nn.Linear(2 * hidden, attn_dim), nn.Tanh(), nn.Linear(attn_dim, 1, bias=False))
        self.classifier = nn.Sequential(
            nn.BatchNorm1d(2 * hidden), nn.Dropout(dropout),
            nn.Linear(2 * hidden, fc), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(fc, 2))

    def _pool(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> pooled (B, 2H), weights (B, T) at the original frame positions (0 on masked frames)."""
        out, _, lengths, order = run_rnn(self.rnn, x, mask)      # out (B, T, 2H), valid steps first
        valid = step_mask(lengths, x.shape[1])                   # (B, T) compacted layout
        weights = masked_softmax(self.score(out).squeeze(-1), valid)   # (B, T)
        pooled = torch.einsum("bt,bth->bh", weights, out)        # (B, 2H)
        return pooled, uncompact(weights, order)

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._pool(x, mask.bool())[0]

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled)                           # (B, 2)

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame attention weights (B, T): sum to 1 over each video's valid frames, 0 elsewhere."""
        return self._pool(x, mask.bool())[1]


@register_head("bilstm-attn")
class BiLSTMAttention(AttentionHead):
    """2-layer Bi-LSTM, attention pooling, BatchNorm, FC layers, dropout."""
    cell = nn.LSTM


@register_head("bigru-attn")
class BiGRUAttention(AttentionHead):
    """The same with a Bi-GRU."""
    cell = nn.GRU
