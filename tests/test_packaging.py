"""The project installs as one distribution, its CLI lists every command, and conda stays in step."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("sample", "faces", "features", "inspect", "train-ensemble", "train-head", "report", "predict",
            "evaluate", "export", "serve")


def _pip_deps_from_environment_yml() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "- pip:")
    deps = []
    for ln in lines[start + 1:]:
        m = re.match(r"\s{6,}- (\S+)", ln)
        if not m:
            break
        deps.append(m.group(1))
    return deps


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(_pip_deps_from_environment_yml()) == sorted(project["dependencies"])
    conda = (ROOT / "environment.yml").read_text()
    assert "conda-forge" in conda and re.search(r"^\s+- ffmpeg$", conda, re.M)


def test_ci_runs_exactly_make_test_and_readme_says_so():
    ci = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ci[-1].strip() == "make test"
    assert "make test" in (ROOT / "README.md").read_text()


def test_help_lists_every_planned_command():
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    missing = [c for c in COMMANDS if c not in out.stdout]
    assert not missing, f"commands missing from --help: {missing}"


def test_every_command_has_help():
    for command in COMMANDS:
        out = subprocess.run([sys.executable, "-m", "pipeline", command, "--help"], capture_output=True,
                             text=True, cwd=ROOT)
        assert out.returncode == 0, (command, out.stderr[-500:])
        assert "usage" in out.stdout.lower()
