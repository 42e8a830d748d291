"""The HTML report in a real browser: headless Chromium (Debian's `chromium`, which scripts/setup.sh installs)
renders it with no console error and decodes every chart at its size; the screenshot is kept as an artifact
in reports/artifacts/."""

from __future__ import annotations

import base64
import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
from PIL import Image

from harness.cli.report import POLICY
from harness.gates.baseline import load_policy
from harness.profiles import all_profiles
from harness.report import build, load_run, write
from harness.virtual.boards import default_name
from harness.virtual.recipe import ARCHES
from tests.ci import unavailable
from tests.test_report import REPO, hil_report, make_run

ARTIFACTS = REPO / "reports" / "artifacts"
DECODED = ("<script>window.addEventListener('load', () => { for (const img of document.images) "
           "{ img.dataset.decoded = img.naturalWidth + 'x' + img.naturalHeight; } });</script>")
OVERHANG = ("<script>window.addEventListener('load', () => { const box = document.querySelector('svg')"
            ".getBoundingClientRect(); for (const text of document.querySelectorAll('svg text')) { const r = "
            "text.getBoundingClientRect(); text.dataset.overhang = Math.max(box.left - r.left, r.right - box.right, "
            "box.top - r.top, r.bottom - box.bottom); } });</script>")


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


def lab_trends() -> dict[tuple[str, str], pd.DataFrame]:
    """Two runs of a `hil virtual lab` of every profile on each architecture, by the names it gives its boards
    (virtual-agx-xavier-arm64-4 and the like): raw FPS of each board's longest configuration (a label per row) and
    p50 of all its configurations (past 40 rows: a label per board)."""
    runs = pd.to_datetime(["2026-11-01", "2026-11-02"], utc=True)
    trends = {}
    for index, (profile, arch) in enumerate(itertools.product(all_profiles().values(), ARCHES), 1):
        board = f"{default_name(profile.name, arch)}-{index}"
        configs = [f"{mode.name} {precision} b{batch}" for mode in profile.power_modes
                   for precision in profile.precisions for batch in profile.batch_sizes]
        trends[(board, "raw FPS")] = pd.DataFrame({max(configs, key=len): [100.0, 90.0]}, index=runs)
        trends[(board, "p50 ms")] = pd.DataFrame({config: [3.0, 3.3] for config in configs}, index=runs)
    return trends


def test_every_heat_map_label_shows_in_full_in_chromium(tmp_path: Path) -> None:
    report = build([load_run(make_run(tmp_path, "now"))], load_policy(POLICY))
    report.trends = lab_trends()
    write(report, tmp_path)
    uris = re.findall(r'<img alt="[^"]* over the history[^"]*" src="data:image/svg\+xml;base64,([^"]+)"',
                      (tmp_path / "report.html").read_text())
    assert len(uris) == 2
    texts: dict[str, float] = {}
    for index, uri in enumerate(uris):  # inline, each on its own page: a script measures the SVG's text there
        svg = base64.b64decode(uri).decode()
        probe = tmp_path / f"heat-map-{index}.html"
        probe.write_text(f"<!doctype html><html><body>{svg[svg.index('<svg'):]}{OVERHANG}</body></html>")
        dom = chromium(probe, "--dump-dom", "--virtual-time-budget=10000")
        assert dom.returncode == 0 and console_errors(dom.stderr) == [], dom.stderr[-2000:]
        texts |= {text: float(px) for px, text in
                  re.findall(r'<text [^>]*data-overhang="([^"]+)"[^>]*>([^<]+)</text>', dom.stdout)}
    boards = {board for board, _ in report.trends}
    longest = max((f"{board} {config}" for (board, label), table in report.trends.items() if label == "raw FPS"
                   for config in table), key=len)
    assert boards <= set(texts) and longest in texts, sorted(texts)
    cut = {text: px for text, px in texts.items() if px > 0}
    assert cut == {}, f"text cut at the heat map's edge (px outside): {cut}"
