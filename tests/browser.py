"""Headless Chromium for report tests: load a page, report where elements are, take screenshots."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
POSITIONS = """<script>
window.addEventListener('load', () => {
  const out = {};
  for (const id of %s) {
    const el = document.getElementById(id);
    if (el) { const r = el.getBoundingClientRect(); out[id] = [r.top + window.scrollY, r.bottom + window.scrollY]; }
  }
  const imgs = [...document.images];
  out['_images'] = [imgs.length, imgs.filter(i => i.complete && i.naturalWidth > 0).length];
  document.body.setAttribute('data-positions', JSON.stringify(out));
});
</script></body>"""


# headless, quiet and offline: what every test's Chromium runs with (tests/cdp.py too)
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def flags(profile: Path) -> list[str]:
    return [CHROMIUM, *HEADLESS, "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=5000"]


def positions(page: Path, ids: list[str], tmp: Path, width: int = 1280, height: int = 1000) -> dict:
    """{id: [top, bottom]} in CSS pixels of the elements with those ids, and '_images': [all, loaded]."""
    probe = tmp / "positions.html"
    probe.write_text(page.read_text().replace("</body>", POSITIONS % json.dumps(ids)))
    out = subprocess.run([*flags(tmp / "profile"), f"--window-size={width},{height}", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r"data-positions=\"([^\"]+)\"", out.stdout)
    assert found, "the page did not finish loading"
    return json.loads(found.group(1).replace("&quot;", '"'))


def screenshot(page: Path, out: Path, tmp: Path, width: int = 1280, height: int = 1000) -> Path:
    res = subprocess.run([*flags(tmp / "profile"), f"--screenshot={out}", f"--window-size={width},{height}",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and out.is_file(), res.stderr[-2000:]
    return out
