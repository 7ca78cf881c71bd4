"""The main job on real (generated) video: report on a trained run, a head joining it, and the Make interface."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, cli


def test_report_on_a_trained_run_writes_every_output(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run["run"], run)
    cli("report", str(run))
    for name in ("report.md", "report.html", "metrics.json", "comparisons.csv", "predictions.csv"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    text = json.dumps(metrics)
    for model in ("ensemble", "lstm", "bigru-attn", "meanpool"):
        assert model in text
    md = (run / "report.md").read_text()
    assert "RANDOM" in md.upper() and "video-level" in md
    assert md.count("data:image/png") == 0 and (run / "report.html").read_text().count("data:image/png") >= 4


def test_train_head_adds_a_member_to_an_existing_run(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run["run"], run)
    before = json.loads((run / "run.json").read_text())
    cli("train-head", "gru", "--store", str(trained_run["store"]), "--run", str(run), "--epochs", "2")
    after = json.loads((run / "run.json").read_text())
    assert [m["name"] for m in after["members"]][:len(before["members"])] == [m["name"] for m in before["members"]]
    assert any(m["head"] == "gru" for m in after["members"])
    assert (run / "members").joinpath([m["name"] for m in after["members"] if m["head"] == "gru"][0],
                                      "best.pt").is_file()
    assert "gru" in (run / "predictions.csv").read_text()


@pytest.mark.parametrize("target, expected", [
    ("features DATA=d STORE=s.h5 ARGS=--new", "-m pipeline features d --store s.h5 --new"),
    ("features DATA=d ENGINE=ray", "-m pipeline features d --store data/features.h5 --engine ray"),
    ("train-ensemble STORE=s.h5 RUN=r", "-m pipeline train-ensemble --store s.h5 --run r"),
    ("train-head HEAD=gru STORE=s.h5 RUN=r", "-m pipeline train-head gru --store s.h5 --run r"),
    ("report RUN=r", "-m pipeline report r"),
    ("evaluate RUN=r STORE=other.h5", "-m pipeline evaluate r --store other.h5"),
    ("evaluate RUN=r STORE=o.h5 ARGS=--split=test", "-m pipeline evaluate r --store o.h5 --split=test"),
    ("predict VIDEO=v.mp4 RUN=r", "-m pipeline predict v.mp4 --run r"),
    ("sample DATA=out VIDEOS=6", "-m pipeline sample out --videos 6"),
])
def test_make_targets_pass_the_public_variables(target, expected):
    out = subprocess.run(["make", "-n", "--no-print-directory", *target.split()], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert expected in " ".join(out.stdout.split())


def test_setup_is_a_no_op_the_second_time():
    out = subprocess.run(["make", "-q", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, "make setup would run again although pyproject.toml did not change"
