"""The command line and what sits on top of the stages: datasets, the sample, the report, predict.

``pipeline.core`` is the base layer every other package imports; nothing below this package imports the rest
of it (tests/test_layers.py).
"""
from pipeline.core.versions import PROJECT_VERSION as __version__  # noqa: F401
