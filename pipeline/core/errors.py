"""One base class for every error that is the user's to fix: the CLI prints it as one line, no traceback."""


class PipelineError(Exception):
    """Bad input, a wrong path, a missing file or weights: a message that says what to do."""
