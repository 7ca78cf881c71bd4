"""The built-in heads. Importing this package registers each of them (see ``ensembles.registry``).

Every head maps frame features (B, T, D) and a frame mask (B, T) to logits (B, 2) [real, fake], and a
masked-out frame never changes a prediction. Heads that score frames one by one (``meanpool``,
``framelinear``) also have ``frame_logits(x, mask) -> (B, T, 2)``, the source of frame-level metrics.
"""
from ensembles.heads import attention, framelinear, last_state, meanpool  # noqa: F401  (registration side effect)
from ensembles.heads.base import Head

__all__ = ["Head"]
