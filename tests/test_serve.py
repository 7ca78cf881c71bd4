"""serve: a real server on a free loopback port (a subprocess, killed when this module ends), a real client.

One server for the module, with a token and a 1 MB upload limit; the browser test drives the page in it.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from bench.serve_load import Server
from tests import clips
from tests.cdp import CHROMIUM, Chromium
from tests.conftest import ROOT, cli

TOKEN = "s3cret-test-token"
DOCS_SHOT = ROOT / "docs" / "serve.png"


@pytest.fixture(scope="module")
def served(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    work = base / "work"
    work.mkdir()
    with Server(trained_run["run"], base / "server.log", "--max-upload-mb", "1", "--workdir", str(work),
                token=TOKEN) as server:
        server.work = work
        yield server


@pytest.fixture(scope="module")
def predicted(trained_run) -> dict:
    """``predict --json`` on the sample's fake clips: what the server must answer for each."""
    out = json.loads(cli("predict", str(trained_run["data"] / "fake"), "--run", str(trained_run["run"]), "--json").stdout)
    return {"threshold": out["threshold"], **{Path(v["path"]).name: v for v in out["videos"]}}


def _post(server, path: Path | None = None, name: str | None = None, data: bytes | None = None, headers=None):
    body = data if data is not None else path.read_bytes()
    return requests.post(server.url + "/v1/videos", files={"file": (name or path.name, body)},
                         headers=server.headers if headers is None else headers, timeout=60)


def _wait(server, job_id: str, timeout: float = 120) -> tuple[dict, list[str]]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{server.url}/v1/videos/{job_id}", headers=server.headers, timeout=30).json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("done", "failed"):
            return job, seen
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} unfinished after {timeout} s (seen {seen})")


def test_an_upload_gets_the_result_predict_json_gives_for_the_same_file(served, trained_run, predicted):
    video = sorted((trained_run["data"] / "fake").glob("*.mp4"))[0]
    r = _post(served, video)
    assert r.status_code == 202 and set(r.json()) == {"id", "status", "url"}
    job, seen = _wait(served, r.json()["id"])
    assert job["status"] == "done" and seen[-1] == "done" and set(seen) <= {"queued", "decoding", "detecting",
                                                                             "scoring", "done"}
    assert job["progress"] == 1.0 and job["filename"] == video.name and job["bytes"] == video.stat().st_size
    assert set(job["timings"]) >= {"scoring_s", "total_s"} and job["timings"]["total_s"] > 0
    want = predicted[video.name]
    got = job["result"]
    assert got["threshold"] == predicted["threshold"]
    for key in ("status", "label", "face_coverage", "error"):
        assert got[key] == want[key], key
    assert got["prob_fake"] == pytest.approx(want["prob_fake"], abs=1e-7)
    assert got["members"] == pytest.approx(want["members"], abs=1e-7)
    assert "path" not in got                                     # the server's own path is never shown
    png = requests.get(served.url + job["explanation"], headers=served.headers, timeout=30)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 10_000
    assert "RANDOM BACKBONE WEIGHTS" in job["warning"]


def test_a_video_without_a_face_is_a_normal_result(served, tmp_path):
    noise = np.random.default_rng(1).integers(0, 255, (6, 96, 96, 3), dtype=np.uint8)
    job, _ = _wait(served, _post(served, clips.write_frames(tmp_path / "noface.mp4", noise)).json()["id"])
    assert job["status"] == "done"
    assert job["result"]["label"] == "no face found" and job["result"]["prob_fake"] == 0.5
    assert set(job["result"]["members"].values()) == {0.5} and job["explanation"] is None
    r = requests.get(f"{served.url}/v1/videos/{job['id']}/explanation.png", headers=served.headers, timeout=30)
    assert r.status_code == 404 and "no face" in r.json()["detail"]


def test_bad_uploads_get_a_4xx_with_a_one_line_reason_and_leave_nothing_behind(served, trained_run, tmp_path):
    before = set(os.listdir(served.work / os.listdir(served.work)[0]))
    text = _post(served, clips.text_file(tmp_path / "clip.mp4"))               # a video's name, a text's bytes
    assert text.status_code == 415 and text.json()["detail"].startswith("not a video")
    empty = _post(served, clips.empty_file(tmp_path / "empty.mp4"))
    assert empty.status_code == 400 and empty.json()["detail"] == "empty file (0 bytes)"
    big = np.random.default_rng(0).bytes(1_500_000)
    over = _post(served, name="big.mp4", data=big)
    assert over.status_code == 413 and over.json()["detail"] == "file over the limit of 1 MB"

    def chunks():                                     # no Content-Length: cut off while streaming
        boundary = b"--b0undary"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n\r\n'
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
        yield b"\r\n" + boundary + b"--\r\n"
    streamed = requests.post(served.url + "/v1/videos", data=chunks(), timeout=60,
                             headers={**served.headers, "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert streamed.status_code == 413
    nofield = requests.post(served.url + "/v1/videos", files={"video": ("a.mp4", b"x")}, headers=served.headers)
    assert nofield.status_code == 400 and "'file'" in nofield.json()["detail"]
    for r in (text, empty, over, streamed, nofield):
        assert "\n" not in r.json()["detail"] and str(served.work) not in r.json()["detail"]
    # the bytes decide, not the name: a real clip called notes.txt, with a path in its name, is judged
    video = sorted((trained_run["data"] / "real").glob("*.mp4"))[0]
    odd = _post(served, video, name="../../etc/notes.txt")
    assert odd.status_code == 202
    job, _ = _wait(served, odd.json()["id"])
    assert job["status"] == "done" and job["filename"] == "notes.txt"
    private = served.work / os.listdir(served.work)[0]
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert set(os.listdir(private)) - before == {job["id"]}                    # refused uploads left nothing
    assert sorted(os.listdir(private / job["id"])) == ["explanation.png", "upload"]


def test_every_api_call_needs_the_token_when_one_is_set(served):
    job_url = f"{served.url}/v1/videos/{'0' * 32}"
    for method, url in (("get", served.url + "/v1/model"), ("post", served.url + "/v1/videos"),
                        ("get", job_url), ("get", job_url + "/explanation.png"), ("delete", job_url)):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = requests.request(method, url, headers=headers, timeout=30)
            assert r.status_code == 401, (method, url, headers)
            assert r.headers["WWW-Authenticate"] == "Bearer" and "token" in r.json()["detail"]
    assert requests.get(served.url + "/v1/model", headers=served.headers, timeout=30).status_code == 200
    assert requests.get(job_url, headers=served.headers, timeout=30).status_code == 404
    assert requests.get(served.url + "/healthz", timeout=30).json()["status"] == "ok"      # no secrets there
    page = requests.get(served.url + "/", timeout=30)
    assert page.status_code == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "Access-Control-Allow-Origin" not in requests.get(served.url + "/v1/model", timeout=30,
                                                             headers={**served.headers, "Origin": "http://x.org"}).headers


def test_model_provenance_and_openapi_docs(served, trained_run):
    info = requests.get(served.url + "/v1/model", headers=served.headers, timeout=30).json()
    run = json.loads((trained_run["run"] / "run.json").read_text())
    assert info["weights_sha256"] == run["store_identity"]["weights_sha256"]
    assert info["random_weights"] is True and info["warning"].startswith("RANDOM BACKBONE WEIGHTS")
    assert [m["name"] for m in info["members"]] == [m["name"] for m in run["members"]]
    assert info["threshold"] == run["threshold"] and info["frames"] == 4 and info["server"]["max_upload_mb"] == 1
    spec = requests.get(served.url + "/openapi.json", timeout=30).json()
    assert {"/v1/videos", "/v1/videos/{job_id}", "/v1/videos/{job_id}/explanation.png", "/v1/model",
            "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert "swagger" in requests.get(served.url + "/docs", timeout=30).text.lower()


def test_a_finished_job_can_be_deleted_with_its_upload(served, trained_run):
    video = sorted((trained_run["data"] / "real").glob("*.mp4"))[1]
    job, _ = _wait(served, _post(served, video).json()["id"])
    private = served.work / os.listdir(served.work)[0]
    assert (private / job["id"] / "upload").is_file()
    url = f"{served.url}/v1/videos/{job['id']}"
    assert requests.delete(url, headers=served.headers, timeout=30).status_code == 204
    assert requests.get(url, headers=served.headers, timeout=30).status_code == 404
    assert not (private / job["id"]).exists()


def test_binding_beyond_loopback_needs_a_token(trained_run):
    res = cli("serve", "--run", str(trained_run["run"]), "--host", "0.0.0.0", check=False,
              env={"DEEPFAKE_SERVE_TOKEN": ""})
    assert res.returncode == 2 and "token" in res.stderr and res.stderr.count("\n") <= 3


def test_the_upload_parser_keeps_client_names_out_of_paths(tmp_path):
    from pipeline.serve.uploads import UploadError, display_name, receive

    async def body(parts):
        for p in parts:
            yield p

    form = (b'--xx\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            b'--xx\r\nContent-Disposition: form-data; name="file"; filename="..\\\\..\\\\evil\x07.mp4"\r\n'
            b'Content-Type: video/mp4\r\n\r\n' + b"V" * 1000 + b"\r\n--xx--\r\n")
    dest = tmp_path / "upload"
    got = asyncio.run(receive("multipart/form-data; boundary=xx", None, body([form[:37], form[37:]]), dest, 5000))
    assert got.bytes == 1000 and dest.read_bytes() == b"V" * 1000 and got.filename == "evil.mp4"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600 and os.listdir(tmp_path) == ["upload"]
    with pytest.raises(UploadError) as err:
        asyncio.run(receive("multipart/form-data; boundary=xx", None, body([form]), tmp_path / "u2", 999))
    assert err.value.status == 413
    assert display_name("a/b/c.mp4") == "c.mp4" and len(display_name("x" * 1000)) == 200


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_the_page_in_headless_chromium_uploads_a_clip_and_shows_the_verdict_and_picture(served, trained_run,
                                                                                        predicted, tmp_path):
    video = sorted((trained_run["data"] / "fake").glob("*.mp4"))[1]
    with Chromium(tmp_path / "profile") as browser:
        browser.call("Page.enable")
        browser.call("Page.addScriptToEvaluateOnNewDocument",      # the token, as a reviewer types it once
                     source=f"sessionStorage.setItem('deepfake-token', {json.dumps(TOKEN)})")
        browser.call("Page.navigate", url=served.url + "/")
        browser.wait_for("document.readyState === 'complete' && !document.getElementById('random-warning').hidden")
        assert "RANDOM BACKBONE WEIGHTS" in browser.evaluate("document.getElementById('random-warning').textContent")
        browser.set_file("#file", video)
        browser.wait_for("document.body.dataset.picture === 'loaded'", timeout=120)
        verdict = browser.evaluate("document.getElementById('verdict').textContent")
        summary = browser.evaluate("document.getElementById('summary').textContent")
        members = browser.evaluate("[...document.querySelectorAll('#members tbody tr')].map(r => r.cells[0].textContent)")
        width = browser.evaluate("document.getElementById('explanation').naturalWidth")
        bar = browser.evaluate("document.getElementById('bar-fill').style.width")
        shot = browser.screenshot(tmp_path / "page.png")
    expected = predicted[video.name]
    assert verdict == expected["label"].upper() and video.name in summary
    assert f"{expected['prob_fake']:.3f}" in summary
    assert sorted(members) == sorted(expected["members"]) and width > 300 and bar == "100%"
    assert 20_000 < shot.stat().st_size
    if os.environ.get("UPDATE_DOCS"):              # regenerate the README's screenshot: UPDATE_DOCS=1 pytest ...
        shutil.copy(shot, DOCS_SHOT)


def test_the_worker_answers_every_job_it_takes_and_counts_every_refusal(tmp_path):
    """A scoring pass that yields no verdict for a job fails that job with a reason; it is never left waiting.
    A full queue refuses (and counts) before a body is read and again at submit."""
    from types import SimpleNamespace

    from pipeline.serve.jobs import Board, Job, QueueFull
    from pipeline.serve.scoring import Scored
    from pipeline.serve.uploads import UploadDir

    class OneVerdictOnly:                    # yields a verdict for the first video of a batch only
        threshold, random_weights = 0.5, False

        def score(self, videos, folders, progress):
            vid = videos[0][0]
            pred = SimpleNamespace(video_id=vid, status="ok", error="",
                                   as_dict=lambda: {"video_id": vid, "status": "ok", "path": "/x"})
            yield Scored(vid, pred, None)

    uploads = UploadDir(str(tmp_path))
    board = Board(OneVerdictOnly(), uploads, queue_size=2, batch=2, keep_seconds=60)
    jobs = [board.submit(Job(i, uploads.job_folder(i), tmp_path / "v", "v.mp4", 1)) for i in ("a1", "b2")]
    with pytest.raises(QueueFull):
        board.check_room()
    with pytest.raises(QueueFull):
        board.submit(Job("c3", uploads.job_folder("c3"), tmp_path / "v", "v.mp4", 1))
    board.start()
    deadline = time.monotonic() + 10
    while not all(j.finished for j in jobs) and time.monotonic() < deadline:
        time.sleep(0.02)
    board.stop()
    assert [j.status for j in jobs] == ["done", "failed"] and "no result" in jobs[1].error
    assert jobs[0].result == {"video_id": "a1", "status": "ok", "threshold": 0.5}
    stats = board.stats()
    assert (stats["accepted"], stats["refused"], stats["done"], stats["failed"]) == (2, 2, 1, 1)
