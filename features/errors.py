"""The store's one error type (its own module so that the lock, the reader and the writer share it)."""
from pipeline.core.errors import PipelineError


class StoreError(PipelineError):
    """The store is missing, not a valid feature store, locked, or does not match the requested config."""
