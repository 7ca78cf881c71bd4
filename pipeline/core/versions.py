"""Package versions, for the provenance every output records."""
from __future__ import annotations

import platform
from importlib import metadata

PROJECT = "deepfake-ensemble"
PROJECT_VERSION = "0.2.0"


def package_versions(*names: str) -> dict[str, str]:
    """``{"python": ..., "platform": ..., "project": ..., name: version or "not installed"}``."""
    out = {"python": platform.python_version(), "platform": platform.platform(), "project": PROJECT_VERSION}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
