"""Imports run one way: pipeline.core <- features, ensembles <- stages <- pipeline (the command line on top).

The check parses every module (imports inside functions included) and fails on an import of a higher layer,
or between the two packages of the second layer (the store and the models know nothing of each other).
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("pipeline", "stages", "features", "ensembles")
LAYER = {"pipeline.core": 0, "features": 1, "ensembles": 1, "stages": 2, "pipeline": 3}


def layer(module: str) -> tuple[int, str] | None:
    """(layer, package) of one of our modules, None for anything else."""
    if module == "pipeline.core" or module.startswith("pipeline.core."):
        return 0, "pipeline.core"
    top = module.split(".")[0]
    return (LAYER[top], top) if top in PACKAGES else None


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "pipeline":        # "from pipeline import core" is the base; "... import ui" is not
                found += [(node.lineno, f"pipeline.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def violations(root: Path) -> list[str]:
    bad = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            here = layer(module)
            for line, target in imports_of(path, module):
                there = layer(target)
                if there is None or here is None:
                    continue
                sideways = there[0] == here[0] == 1 and there[1] != here[1]
                if there[0] > here[0] or sideways:
                    bad.append(f"{path.relative_to(root)}:{line} ({here[1]}) imports {target} ({there[1]})")
    return bad


def test_no_module_imports_a_higher_layer():
    assert violations(ROOT) == []


def test_the_check_catches_an_upward_import(tmp_path):
    """A copy of the tree with one upward import added (the store importing the command line) fails."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    store = tmp_path / "features" / "store.py"
    store.write_text(store.read_text() + "\n\ndef _cli():\n    from pipeline.cli import main\n    return main\n")
    stage = tmp_path / "stages" / "media.py"
    stage.write_text(stage.read_text() + "\nfrom pipeline import ui  # noqa\n")
    sideways = tmp_path / "ensembles" / "decision.py"
    sideways.write_text(sideways.read_text() + "\nfrom features.store import FeatureStore  # noqa\n")
    found = violations(tmp_path)
    assert any(v.startswith("features/store.py:") and "imports pipeline.cli" in v for v in found), found
    assert any(v.startswith("stages/media.py:") and "imports pipeline" in v for v in found), found
    assert any(v.startswith("ensembles/decision.py:") and "imports features.store" in v for v in found), found
    assert len(found) == 3, found


def test_relative_imports_are_resolved(tmp_path):
    (tmp_path / "stages").mkdir()
    for pkg in ("pipeline", "features", "ensembles"):
        (tmp_path / pkg).mkdir()
    (tmp_path / "stages" / "__init__.py").write_text("")
    (tmp_path / "stages" / "x.py").write_text("from ..pipeline import cli\nfrom . import y\n")
    assert violations(tmp_path) == ["stages/x.py:1 (stages) imports pipeline.cli (pipeline)"]
