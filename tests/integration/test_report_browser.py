"""The run report in a real browser (headless Chromium): every image loads and nothing overflows a 1280-px
window. Chromium comes from Debian (the Makefile's APT_PACKAGES)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from support.run_report import sample_result

from btcpipe.run.report import write_report

WIDTH = 1280
# Appended to a copy of the page (the report itself has no script): records what the browser laid out.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
                                               width: i.getBoundingClientRect().width}));
  document.body.setAttribute('data-probe', JSON.stringify({
    scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth, imgs}));
});
</script>"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed (make install-deps installs the Makefile's APT_PACKAGES)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    base = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={WIDTH},1000",
            "--virtual-time-budget=10000", "--disable-dev-shm-usage", "--no-first-run"]
    return subprocess.run([_chromium(), *base, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("ok", [True, False], ids=["succeeded", "failed"])
def test_report_renders_in_chromium_with_every_image_loaded_and_no_horizontal_overflow(
    tmp_path: Path, ok: bool
) -> None:
    page = Path(write_report(sample_result(tmp_path, ok=ok, extra_hop=True), tmp_path)["html"])
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    proc = _run("--dump-dom", probe.as_uri())
    match = re.search(r"data-probe=\"([^\"]+)\"", proc.stdout)
    assert match, proc.stderr[-2000:]
    state = json.loads(match.group(1).replace("&quot;", '"'))
    assert state["scrollWidth"] <= WIDTH
    assert state["imgs"], "the page shows plots"
    assert all(i["ok"] for i in state["imgs"]), state["imgs"]
    assert all(0 < i["width"] <= WIDTH for i in state["imgs"])


def test_report_screenshot_is_1280_wide(tmp_path: Path) -> None:
    page = Path(write_report(sample_result(tmp_path), tmp_path)["html"])
    shot = tmp_path / "report.png"
    proc = _run(f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), proc.stderr[-2000:]
    with shot.open("rb") as fh:
        header = fh.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, _height = struct.unpack(">II", header[16:24])
    assert width == WIDTH
