"""The built-in heads. Importing this package registers each of them (see ``ensembles.registry``).

Every head maps frame features (B, T, D) and a frame mask (B, T) to logits (B, 2) [real, fake], and a
masked-out frame never changes a prediction.
"""
from ensembles.heads import attention, last_state, meanpool  # noqa: F401  (registration side effect)
from ensembles.heads.base import Head

__all__ = ["Head"]
