"""``lstm`` and ``gru``: a unidirectional recurrent net read at each video's last valid frame.

This is the classic recipe of Güera and Delp, "Deepfake Video Detection Using Recurrent Neural Networks"
(AVSS 2018, https://doi.org/10.1109/AVSS.2018.8639163): per-frame CNN features, an LSTM, the final state,
a classifier.
"""
from __future__ import annotations

import torch
from torch import nn

from ensembles.heads.base import Head
from ensembles.heads.masked import run_rnn
from ensembles.registry import register_head


class LastStateHead(Head):
    cell: type[nn.RNNBase] = nn.LSTM

    def __init__(self, in_dim: int = 2048, hidden: int = 512, layers: int = 1, dropout: float = 0.5):
        super().__init__()
        self.rnn = self.cell(in_dim, hidden, layers, batch_first=True,
                             dropout=dropout if layers > 1 else 0.0)   # between stacked layers only
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, 2)

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _, h_n, _, _ = run_rnn(self.rnn, x, mask)        # h_n (layers, B, H) at the last valid frame
        return h_n[-1]                                   # (B, H) top layer

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(pooled))             # (B, 2)


@register_head("lstm")
class LSTMHead(LastStateHead):
    """Unidirectional LSTM, last valid hidden state, linear classifier."""
    cell = nn.LSTM


@register_head("gru")
class GRUHead(LastStateHead):
    """The same with a GRU."""
    cell = nn.GRU
