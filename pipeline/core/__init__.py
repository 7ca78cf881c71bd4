"""The base layer: what every other layer may import, and which imports nothing else of this project.

    config    frozen-dataclass configs (defaults <- TOML <- CLI), identity fields marked on the fields
    errors    PipelineError: the one-line errors the command line prints without a traceback
    atomic    files that appear whole or not at all; JSON written that way
    progress  callbacks through which the stages report progress (the command line draws the bars)
    versions  package versions for provenance
    device    torch device choice
    videos    a video to process (VideoEntry) and finding video files in folders

Layers, each importing only itself and those below it (tests/test_layers.py keeps it so):
    pipeline.core  <-  features, ensembles  <-  stages  <-  pipeline (command line, datasets, report, predict)
"""
