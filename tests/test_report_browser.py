"""The HTML report in a real browser: headless Chromium (Debian's `chromium`, which scripts/setup.sh installs)
renders it with no console error and decodes every chart at its size; the screenshot is kept as an artifact
in reports/artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from tests.ci import unavailable
from tests.test_report import REPO, hil_report, make_run

ARTIFACTS = REPO / "reports" / "artifacts"
DECODED = ("<script>window.addEventListener('load', () => { for (const img of document.images) "
           "{ img.dataset.decoded = img.naturalWidth + 'x' + img.naturalHeight; } });</script>")


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        unavailable("chromium not installed (apt-get install chromium; scripts/setup.sh installs it)")
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--log-level=0", *args, page.as_uri()], capture_output=True, text=True, timeout=120,
                          check=False)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_the_console_check_sees_a_page_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>throw new Error('broken report')</script></body></html>")
    assert any("broken report" in line for line in console_errors(chromium(page, "--dump-dom").stderr))


def test_the_report_renders_in_chromium_with_its_charts(tmp_path: Path) -> None:
    base, now = make_run(tmp_path, "base"), make_run(tmp_path, "now")
    assert hil_report(now, "--baseline", base).returncode == 0
    page = now / "report.html"
    dom = chromium(page, "--dump-dom")
    assert dom.returncode == 0 and console_errors(dom.stderr) == [], dom.stderr[-2000:]
    assert 'src="data:image/svg+xml;base64,' in dom.stdout
    probe = tmp_path / "probe.html"  # the report plus a script that writes each chart's decoded size into the DOM
    probe.write_text(page.read_text() + DECODED)
    sizes = re.findall(r'<img alt="([^"]+)" [^>]*data-decoded="(\d+)x(\d+)"', chromium(
        probe, "--dump-dom", "--virtual-time-budget=10000").stdout)
    titles = [title for title, _, _ in sizes]
    assert any("FPS per configuration" in t for t in titles) and any("Across devices" in t for t in titles), titles
    assert len(sizes) == page.read_text().count("<img "), "a chart the browser did not decode"
    for title, width, height in sizes:
        assert int(width) > 200 and int(height) > 100, title
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report-screenshot.png"
    shot = chromium(page, f"--screenshot={screenshot}", "--window-size=1280,2400", "--hide-scrollbars")
    assert shot.returncode == 0 and console_errors(shot.stderr) == [], shot.stderr[-2000:]
    with Image.open(screenshot) as picture:
        low, high = picture.convert("L").getextrema()
    assert high - low > 100, "the screenshot is blank"
