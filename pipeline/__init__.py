"""Command line, configs, dataset manifests, sample data and the report."""
__version__ = "0.1.0"
