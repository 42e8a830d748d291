"""Reports from run folders: tables from the results, the regression gate's exit status, self-contained HTML,
modeled figures marked, and bad input as one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.history import History
from harness.report import load_run, trend
from harness.results import ResultsWriter, RowContext, verdict_row

REPO = Path(__file__).resolve().parents[1]


def make_run(reports: Path, name: str, fps: float = 300.0, latency: float = 3.0, passed: bool = True) -> Path:
    """A throughput and a correctness run of one virtual board: measured FPS and latency, modeled power; each
    throughput test's verdict row says `passed`."""
    folder = reports / name
    folder.mkdir(parents=True)
    with ResultsWriter(folder / "results.csv") as results:
        for mode, scale in (("MODE_15W", 1.0), ("MODE_20W", 1.2)):
            context = RowContext(run=name, board="xnx-01", profile="xavier-nx", power_mode=mode, precision="fp32",
                                 batch=1, backend="onnxruntime", device="cpu", suite="test_throughput",
                                 test=f"test_throughput[{mode}-b1-fp32]")
            raw = RowContext(**{**context.__dict__, "phase": "raw"})
            pipeline = RowContext(**{**context.__dict__, "phase": "pipeline"})
            results.write_all([
                raw.row("raw_fps", fps * scale, "fps", spread=0.01), raw.row("latency_p50", latency, "ms", spread=0.01),
                raw.row("latency_p99", latency * 1.5, "ms", spread=0.01),
                pipeline.row("pipeline_fps", fps * scale * 0.9, "fps", spread=0.01),
                pipeline.row("power_mean", 9.0 * scale, "W", source="modeled"),
                pipeline.row("energy_per_frame", 0.03, "J/frame", source="modeled"),
                pipeline.row("fps_per_w", fps / 9.0, "fps/W", source="modeled"),
                verdict_row(context, passed),
            ])
        correctness = RowContext(run=name, board="xnx-01", profile="xavier-nx", precision="fp32",
                                 suite="test_correctness", test="test_map_above_the_model_card_floor[fp32]")
        results.write(correctness.row("map50", 0.988, "ratio"))
    return folder


def hil_report(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "report", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def test_an_identical_baseline_passes_and_every_section_is_filled(tmp_path: Path) -> None:
    base, now = make_run(tmp_path, "base"), make_run(tmp_path, "now")
    done = hil_report(now, "--baseline", base)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 regressed" in done.stdout
    report = json.loads((now / "report.json").read_text())
    assert report["compared"] == 8 and report["regressions"] == []  # measured figures only: 4 per mode
    device = report["devices"][0]
    assert device["modeled_columns"] == ["power W", "J/frame", "FPS/W"]
    assert len(device["throughput"]) == 2 and device["correctness"][0]["mAP@0.5"] == pytest.approx(0.988)
    html = (now / "report.html").read_text()
    assert "data:image/svg+xml;base64," in html and 'class="modeled"' in html
    assert not re.search(r"""(src|href)=["']https?://""", html), "the report must open with no network"
    assert "Trend: no history of these boards was read" in html and "over the history" not in html
    markdown = (now / "report.md").read_text()
    assert "FPS/W (modeled)" in markdown and "raw FPS |" in markdown


def test_one_run_in_the_history_is_one_line_and_two_draw_the_trend(tmp_path: Path) -> None:
    history = tmp_path / "history.sqlite"
    pages = []
    for name, fps in (("night-1", 300.0), ("night-2", 250.0)):
        run = make_run(tmp_path, name, fps=fps)
        History(history).import_run(load_run(run))
        done = hil_report(run, "--history", history)
        assert done.returncode == 0, done.stdout + done.stderr
        pages.append((run / "report.html").read_text())
    one, two = pages
    assert ("<p id=\"trends\">Trend: the history has 1 run of these boards (2 are needed for a trend); the next run "
            "draws it.</p>") in one
    assert "over the history" not in one and "<h2 id=\"trends\">" not in one  # not a heat map drawn
    heat_maps = re.findall(r'<img alt="([^"]+) over the history', two)
    assert heat_maps == ["raw FPS", "FPS/W (modeled)", "p50 ms"] and "Trend: the history has" not in two


def test_a_metric_20_percent_worse_fails_naming_it(tmp_path: Path) -> None:
    base, now = make_run(tmp_path, "base"), make_run(tmp_path, "now", fps=240.0)
    done = hil_report(now, "--baseline", "latest")
    assert done.returncode == 1, done.stdout + done.stderr
    regressions = [line for line in done.stdout.splitlines() if line.startswith("REGRESSION")]
    assert any("xnx-01 MODE_15W fp32 b1: raw_fps [raw]: baseline 300, now 240 (-20.0%" in line
               for line in regressions), done.stdout
    assert f"baseline run {base.name} (newest passing figures in {tmp_path})" in done.stdout
    markdown = (now / "report.md").read_text().splitlines()
    assert markdown[2] == "**Verdict: FAILED**: 4 figures regressed."  # the report opens with the verdict
    assert all("power_mean" not in line for line in regressions)  # a modeled figure is never gated
    assert markdown[4] == "Regressed on xnx-01:"
    html = (now / "report.html").read_text()
    assert '<p id="verdict" class="failed">Verdict: FAILED: 4 figures regressed.</p>' in html
    assert any(line.startswith("- MODE_15W fp32 b1: raw_fps [raw]: baseline 300, now 240") for line in markdown[6:12])


def test_a_night_that_failed_is_nobodys_baseline(tmp_path: Path) -> None:
    """The regressed night failed its tests: the night after is judged against the last one that passed."""
    make_run(tmp_path, "good")
    make_run(tmp_path, "regressed", fps=240.0, passed=False)
    now = make_run(tmp_path, "now", fps=240.0)
    done = hil_report(now, "--baseline", "latest")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "baseline run good (" in done.stdout and "baseline 300, now 240" in done.stdout
    assert json.loads((now / "report.json").read_text())["verdict"] == "failed"


def test_a_crashed_run_still_reports_what_it_measured(tmp_path: Path) -> None:
    run = make_run(tmp_path, "crashed")
    with (run / "results.csv").open("a") as results:
        results.write("crashed,xnx-01,xavier-nx,MODE_15W,fp32,1,onnxruntime,cpu,,test_thr")  # torn by a kill
    loaded = load_run(run)
    assert len(loaded.rows) == 17
    assert hil_report(run).returncode == 0


@pytest.mark.parametrize(("setup", "says"), [
    ("not-a-run", "is not a run folder: it has no results.csv"),
    ("corrupt-row", "a damaged row"),
    ("unknown-baseline", "--baseline /nowhere/run: no such run folder"),
    ("no-earlier-run", "--baseline latest: no earlier run of xnx-01"),
])
def test_bad_input_is_one_line(tmp_path: Path, setup: str, says: str) -> None:
    run = make_run(tmp_path, "run")
    args: list[str | Path] = [run]
    if setup == "not-a-run":
        args = [tmp_path / "empty"]
        (tmp_path / "empty").mkdir()
    elif setup == "corrupt-row":
        text = (run / "results.csv").read_text().replace(",300.0,", ",three hundred,", 1)
        (run / "results.csv").write_text(text)
    elif setup == "unknown-baseline":
        args += ["--baseline", "/nowhere/run"]
    else:
        args += ["--baseline", "latest"]
    done = hil_report(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_load_run_refuses_a_folder_without_results(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a run folder"):
        load_run(tmp_path)


def test_the_trend_colours_change_the_way_the_gate_judges_it() -> None:
    runs = pd.to_datetime(["2026-11-01", "2026-11-02", "2026-11-03"], utc=True)
    boards = {"nx-1": pd.DataFrame({"MAXN fp16 b1": [10.0, 12.0, 12.0]}, index=runs),
              "nano-1": pd.DataFrame({"10W fp16 b1": [50.0, 40.0, 60.0]}, index=runs)}
    worse, against_baseline = trend.change(boards, runs[1], "lower")  # latency: 12 ms after a 10 ms baseline
    assert against_baseline and list(worse.columns) == [("nx-1", "MAXN fp16 b1"), ("nano-1", "10W fp16 b1")]
    assert worse[("nx-1", "MAXN fp16 b1")].tolist() == [pytest.approx(100 / 6), 0.0, 0.0]
    assert worse[("nano-1", "10W fp16 b1")].tolist() == [-25.0, 0.0, -50.0]  # 60 ms against 40: 50 % worse
    median, against_baseline = trend.change(boards, pd.Timestamp("2026-10-01", tz="UTC"), "higher")
    assert not against_baseline and median[("nano-1", "10W fp16 b1")].tolist() == [0.0, -20.0, 20.0]
