"""`hil floors suggest`: floors from the last passing nights of the history (SQLite and a real PostgreSQL server),
the worst figure less the spread rounded down, never from a failed night, per board or profile, as YAML that
lab.yaml loads; its errors are one line."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from harness.gates import check_floors, load_policy
from harness.gates.suggest import FLOOR_METRICS, render_yaml, round_down, suggest, suggest_floors
from harness.history import History
from harness.inventory import load_lab
from harness.profiles import ThroughputFloor, all_profiles, get_profile
from harness.report import load_run
from harness.results import ResultsWriter, Row, RowContext, verdict_row

REPO = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2025, 3, 1, 2, 0, tzinfo=dt.timezone.utc)
GPU = "cuda:0 Orin"


def at(day: int, second: int = 0) -> str:
    """A row time as results.csv writes it (and the history gives back)."""
    return (T0 + dt.timedelta(days=day, seconds=second)).isoformat(timespec="milliseconds")


def night(reports: Path, name: str, day: int, fps: float, *, board: str = "orin-01", profile: str = "agx-orin",
          passed: bool = True, spread: float | None = 0.004, mode: str = "MAXN", backend: str = "tensorrt",
          device: str = GPU, quantizer: str | None = "tensorrt-fp16", fps_per_w: tuple[float, float] | None = None,
          ) -> Path:
    """One throughput test of one board in the run folder `reports/name` (appended: a farm's run holds every
    board's): raw_fps `fps`, pipeline_fps 0.9 x it, a latency, modeled power, fps_per_w of the raw and pipeline
    phases when given (measured), and the test's verdict."""
    folder = reports / name
    folder.mkdir(parents=True, exist_ok=True)
    context = RowContext(run=name, board=board, profile=profile, power_mode=mode, precision="fp16", batch=1,
                         backend=backend, device=device, quantizer=quantizer, suite="test_throughput",
                         test=f"test_throughput[{mode}-b1-fp16]")
    raw, pipeline = replace(context, phase="raw"), replace(context, phase="pipeline")
    rows = [raw.row("raw_fps", fps, "fps", spread=spread), raw.row("latency_p50", 1000.0 / fps, "ms", spread=spread),
            pipeline.row("pipeline_fps", fps * 0.9, "fps", spread=spread),
            pipeline.row("power_mean", 20.0, "W", source="modeled"),
            pipeline.row("fps_per_w", fps / 20.0, "fps/W", source="modeled")]
    if fps_per_w is not None:
        rows = [*rows[:-1], raw.row("fps_per_w", fps_per_w[0], "fps/W", spread=spread),
                pipeline.row("fps_per_w", fps_per_w[1], "fps/W", spread=spread)]
    rows.append(verdict_row(context, passed))
    with ResultsWriter(folder / "results.csv") as results:
        results.write_all(replace(row, time=at(day, index)) for index, row in enumerate(rows))
    return folder


def figure(metric: str, value: float, run: str, day: int, spread: float | None = 0.0, **changes: object) -> Row:
    context = RowContext(run=run, board="orin-01", profile="agx-orin", power_mode="MAXN", precision="fp16", batch=1,
                         backend="tensorrt", device=GPU, quantizer="tensorrt-fp16", suite="test_throughput",
                         test="t", phase="raw")
    return replace(context.row(metric, value, "fps", spread=spread), time=at(day), **changes)  # type: ignore[arg-type]


def mins(floors: dict[str, list[ThroughputFloor]]) -> dict[tuple[str, str, str, str | None], float]:
    """(owner, metric, mode, device) → min."""
    return {(owner, f.metric, str(f.power_mode), f.device): f.min for owner, found in floors.items() for f in found}


# --- the rule, on rows -------------------------------------------------------------------------------------------

def test_rounding_is_down_to_three_significant_digits() -> None:
    assert [round_down(v) for v in (291.87, 0.28791, 12345.6, 999.9999, 294.0)] == \
        [Decimal("291"), Decimal("0.287"), Decimal("1.23E+4"), Decimal("999"), Decimal("294")]
    assert float(round_down(0.1 + 0.2)) <= 0.1 + 0.2


def test_the_floor_is_the_worst_figure_less_the_spread_rounded_down() -> None:
    rows = [figure("raw_fps", 280.0, "n1", 1, spread=0.004), figure("raw_fps", 301.7, "n2", 2, spread=0.004),
            figure("raw_fps", 305.2, "n3", 3, spread=0.004)]
    (floor,) = suggest_floors(rows, last=7)["orin-01"]
    assert floor == ThroughputFloor(power_mode="MAXN", precision="fp16", batch=1, backend="tensorrt", device=GPU,
                                    metric="raw_fps", min=254.0)  # 280 - (305.2 - 280) = 254.8
    (newest,) = suggest_floors(rows, last=2)["orin-01"]
    assert newest.min == 298.0  # 301.7 - 3.5: the oldest night is not among the last 2


def test_the_newest_runs_are_those_measured_last_not_those_named_last() -> None:
    rows = [figure("raw_fps", 100.0, "z-oldest", 1), figure("raw_fps", 200.0, "a-newest", 3),
            figure("raw_fps", 210.0, "m-middle", 2)]
    assert suggest_floors(rows, last=2)["orin-01"][0].min == 190.0  # 200 - 10, without z-oldest's 100


def test_one_run_takes_its_spread_from_its_own_rounds() -> None:
    one = [figure("raw_fps", 200.0, "n1", 1, spread=0.05)]
    assert suggest_floors(one, last=7)["orin-01"][0].min == 190.0
    assert suggest_floors([replace(one[0], spread=None)], last=7)["orin-01"][0].min == 200.0
    # a noisy run among quiet ones: its rounds' spread (0.1 x 300 = 30) is larger than the runs' range (5)
    rows = [figure("raw_fps", 300.0, "n1", 1, spread=0.1), figure("raw_fps", 305.0, "n2", 2, spread=0.0)]
    assert suggest_floors(rows, last=7)["orin-01"][0].min == 270.0


def test_a_floor_that_would_not_be_positive_is_left_out_with_the_reason() -> None:
    rows = [figure("raw_fps", 10.0, "n1", 1), figure("raw_fps", 100.0, "n2", 2),
            figure("pipeline_fps", 90.0, "n1", 1, phase="pipeline")]
    found = suggest(rows, last=7)
    assert [f.metric for f in found.floors()["orin-01"]] == ["pipeline_fps"]
    (gone,) = found.left_out
    assert gone.describe() == "orin-01 raw_fps MAXN fp16 b1 tensorrt on cuda:0 Orin"
    assert gone.left_out == "its spread 90 is as large as its worst figure 10"
    text = render_yaml(found, source="test")
    assert "# left out: orin-01 raw_fps MAXN fp16 b1 tensorrt on cuda:0 Orin: its spread 90" in text
    assert yaml.safe_load(text)["floors"]["orin-01"] == [
        {"power_mode": "MAXN", "precision": "fp16", "batch": 1, "backend": "tensorrt", "device": GPU,
         "metric": "pipeline_fps", "min": 90}]
    nothing = suggest(rows[:2], last=7)
    assert nothing.floors() == {} and yaml.safe_load(render_yaml(nothing, source="test")) == {"floors": {}}


def test_figures_of_another_backend_or_device_never_meet() -> None:
    rows = [figure("raw_fps", 900.0, "n1", 1), figure("raw_fps", 30.0, "n1", 1, backend="onnxruntime", device="cpu",
                                                     quantizer=None),
            figure("raw_fps", 880.0, "n2", 2), figure("raw_fps", 31.0, "n2", 2, backend="onnxruntime", device="cpu",
                                                     quantizer=None)]
    assert mins(suggest_floors(rows, last=7)) == {("orin-01", "raw_fps", "MAXN", GPU): 860.0,
                                                  ("orin-01", "raw_fps", "MAXN", "cpu"): 29.0}


def test_where_a_floor_cannot_tell_figures_apart_the_lowest_is_kept() -> None:
    rows = [figure("raw_fps", 500.0, "n1", 1), figure("raw_fps", 510.0, "n2", 2),  # 490
            figure("raw_fps", 800.0, "n1", 1, quantizer="tensorrt-int8"),  # another quantizer, its own range: 800
            figure("fps_per_w", 30.0, "n1", 1), figure("fps_per_w", 25.0, "n1", 1, phase="pipeline")]
    found = mins(suggest_floors(rows, last=7))
    # had the quantizers' figures been one group, the spread would be 310 and the floor 190
    assert found[("orin-01", "raw_fps", "MAXN", GPU)] == 490.0
    assert found[("orin-01", "fps_per_w", "MAXN", GPU)] == 25.0  # the pipeline phase's, not 25 - 5 from mixing them


def test_only_measured_floor_metrics_of_usable_rows_count() -> None:
    rows = [figure("raw_fps", 300.0, "n1", 1), replace(figure("raw_fps", 10.0, "n2", 2), source="modeled"),
            figure("latency_p50", 3.0, "n1", 1), figure("raw_fps", 5.0, "n3", 3, power_mode=None),
            figure("raw_fps", 5.0, "n3", 3, precision="bf16")]
    found = suggest(rows, last=7)
    assert mins(found.floors()) == {("orin-01", "raw_fps", "MAXN", GPU): 300.0}
    assert found.notes == ["1 figure(s) left out: it names no power mode, batch or backend",
                           "1 figure(s) left out: its precision 'bf16' is not one a floor takes"]
    with pytest.raises(ValueError, match="last must be 1 or more"):
        suggest(rows, last=0)


def test_every_floor_metric_is_one_the_policy_calls_better_higher() -> None:
    policy = load_policy(REPO / "suites" / "regression.yaml")
    assert {m: policy.metrics[m].better for m in FLOOR_METRICS} == dict.fromkeys(FLOOR_METRICS, "higher")


# --- from the history ------------------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> History:
    if request.param == "sqlite":
        return History(tmp_path / "history.sqlite")
    store = History(request.getfixturevalue("postgres_url"))
    with store.engine.begin() as connection:  # one server for the session: each test starts empty
        connection.execute(sa.text("DELETE FROM jetson_hil_results"))
        connection.execute(sa.text("DELETE FROM jetson_hil_runs"))
    return store


def farm(reports: Path, history: History) -> None:
    """Four nights of two AGX Orins: orin-01 at 280, 301.7, 305.2 FPS and a failed night at 150; orin-02 at 250,
    252 (its first night failed at 100); orin-01 also on its CPU on night 3, with measured fps_per_w."""
    for day, (one, two) in enumerate(((280.0, None), (301.7, 250.0), (305.2, 252.0)), 1):
        night(reports, f"night-{day}", day, one)
        night(reports, f"night-{day}", day, two or 100.0, board="orin-02", passed=two is not None)
    night(reports, "night-3", 3, 31.3, backend="onnxruntime", device="cpu", quantizer=None, mode="MODE_30W",
          fps_per_w=(2.0, 1.5))
    night(reports, "night-4", 4, 150.0, passed=False)
    for day in range(1, 5):
        history.import_run(load_run(reports / f"night-{day}"))


def test_floors_come_from_the_last_passing_nights_of_the_history(history: History, tmp_path: Path) -> None:
    farm(tmp_path, history)
    rows = history.passing(FLOOR_METRICS)
    assert {r.run for r in rows if r.board == "orin-01"} == {"night-1", "night-2", "night-3"}  # not the failed one
    every = mins(suggest_floors(rows, last=7))
    assert every[("orin-01", "raw_fps", "MAXN", GPU)] == 254.0  # 280 - 25.2; the failed 150 never counts
    assert every[("orin-02", "raw_fps", "MAXN", GPU)] == 248.0  # 250 - 2: its failed first night neither
    assert every[("orin-01", "pipeline_fps", "MAXN", GPU)] == 229.0  # 252 - 22.68 = 229.32
    assert every[("orin-01", "raw_fps", "MODE_30W", "cpu")] == pytest.approx(31.1)  # one run: 31.3 - 0.1252
    assert every[("orin-01", "fps_per_w", "MODE_30W", "cpu")] == pytest.approx(1.49)  # the pipeline phase's
    assert ("orin-01", "fps_per_w", "MAXN", GPU) not in every  # modeled there
    assert mins(suggest_floors(rows, last=2))[("orin-01", "raw_fps", "MAXN", GPU)] == 298.0  # nights 2 and 3
    profile = mins(suggest_floors(rows, last=7, by="profile"))
    assert profile[("agx-orin", "raw_fps", "MAXN", GPU)] == 248.0  # the lower of its two boards'
    assert {owner for owner, *_ in profile} == {"agx-orin"}


def test_the_yaml_loads_into_lab_yaml_and_passes_the_nights_it_came_from(history: History, tmp_path: Path) -> None:
    farm(tmp_path / "reports", history)
    rows = history.passing(FLOOR_METRICS)
    boards = "boards:\n" + "".join(f"  - {{name: {name}, profile: agx-orin, transport: {{kind: local}}}}\n"
                                   for name in ("orin-01", "orin-02"))
    labs = {}
    for by in ("board", "profile"):
        found = suggest(rows, last=7, by=by)  # type: ignore[arg-type]
        text = render_yaml(found, source=history.shown, now=T0)
        assert text.startswith("# Floors suggested by `hil floors suggest` on 2025-03-01 02:00 UTC from the history")
        lab_file = tmp_path / f"lab-{by}.yaml"
        lab_file.write_text(boards + text)
        labs[by] = load_lab(lab_file, all_profiles())
        assert labs[by].floors == found.floors() and len(labs[by].floors) == (2 if by == "board" else 1)
    assert "  # orin-01: 3 passing runs, night-1 (2025-03-02) to night-3 (2025-03-04)\n" in \
        render_yaml(suggest(rows, last=7), source="x")
    assert "  # orin-01: 2 passing runs, night-2 (2025-03-03) to night-3 (2025-03-04)\n" in \
        render_yaml(suggest(rows, last=2), source="x")
    by_profile = render_yaml(suggest(rows, last=7, by="profile"), source="x")
    assert "  # agx-orin: 3 passing runs, night-1 (2025-03-02) to night-3 (2025-03-04)\n" in by_profile
    assert ("    - {power_mode: MAXN, precision: fp16, batch: 1, backend: tensorrt, device: cuda:0 Orin, "
            "metric: raw_fps, min: 248}  # worst 250 (orin-02), spread 2, 2 runs\n") in by_profile

    lab = labs["board"]
    profile, (entry, _) = get_profile("agx-orin"), lab.boards

    def judged(run: str) -> list[bool]:
        figures = {(r.power_mode, r.backend, r.device): {} for r in history.run_rows(run) if r.board == entry.name}
        for r in history.run_rows(run):
            if r.board == entry.name and r.metric in FLOOR_METRICS:
                figures[r.power_mode, r.backend, r.device][r.metric] = (r.value, r.source)
        return [check.failed for (mode, backend, device), measured in figures.items()
                for check in check_floors(lab.floors_for(entry), profile, profile.mode(mode), "fp16", 1,
                                          backend=str(backend), device=str(device), figures=measured)
                if check.not_applicable is None]

    assert judged("night-3") == [False] * 5  # MAXN raw and pipeline; MODE_30W (cpu) raw, pipeline, fps_per_w
    assert judged("night-4") == [True, True]  # the failed night is below them


# --- the command -------------------------------------------------------------------------------------------------

def hil(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "floors", "suggest", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False, env=env)


def test_the_command_prints_only_yaml_on_stdout(history: History, tmp_path: Path) -> None:
    farm(tmp_path, history)
    spec = history.url.replace("postgresql+psycopg://", "postgresql://")  # as a farm would write it
    done = hil("--history", spec, "--last", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Floors suggested by `hil floors suggest`")
    floors = yaml.safe_load(done.stdout)["floors"]
    assert set(floors) == {"orin-01", "orin-02"}
    assert {"power_mode": "MAXN", "precision": "fp16", "batch": 1, "backend": "tensorrt", "device": GPU,
            "metric": "raw_fps", "min": 298} in floors["orin-01"]
    assert "floor(s) for 2 board(s)" in done.stderr
    only = hil("--history", spec, "--device", "orin-02")
    assert only.returncode == 0 and set(yaml.safe_load(only.stdout)["floors"]) == {"orin-02"}, only.stderr
    profile = hil("--history", spec, "--device", "agx-orin", "--by", "profile")
    assert profile.returncode == 0, profile.stderr
    (floor,) = [f for f in yaml.safe_load(profile.stdout)["floors"]["agx-orin"]
                if f["metric"] == "raw_fps" and f["power_mode"] == "MAXN"]
    assert floor["min"] == 248


def test_a_tag_is_resolved_through_the_lab(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite")
    farm(tmp_path, history)
    lab = tmp_path / "lab.yaml"
    lab.write_text("boards:\n  - {name: orin-02, profile: agx-orin, tags: [rack-b], transport: {kind: local}}\n")
    done = hil("--history", tmp_path / "history.sqlite", "--device", "tag:rack-b", "--lab", lab)
    assert done.returncode == 0, done.stderr
    assert set(yaml.safe_load(done.stdout)["floors"]) == {"orin-02"}


def test_errors_are_one_line(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    history = History(db)
    farm(tmp_path, history)
    night(tmp_path, "night-5", 5, 90.0, board="orin-03", passed=False)
    history.import_run(load_run(tmp_path / "night-5"))
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    cases = {
        ("--device", "ghost"): "no passing throughput figures (raw_fps, pipeline_fps, fps_per_w) of ghost in the "
                               "history",
        ("--device", "orin-03"): "orin-03 is in the history",
        ("--last", "0"): "--last must be 1 or more",
        ("--by", "rack"): "--by must be one of board, profile, got 'rack'",
    }
    for args, message in cases.items():
        done = hil("--history", db, *args)
        assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    missing = hil("--history", tmp_path / "none.sqlite")
    assert missing.returncode == 2 and "no history file" in missing.stderr and not (tmp_path / "none.sqlite").exists()
    garbage = hil("--history", tmp_path / "notes.txt")
    assert garbage.returncode == 2 and "cannot use the history database" in garbage.stderr, garbage.stderr
    assert len(garbage.stderr.strip().splitlines()) == 1
    empty = hil("--history", History(tmp_path / "empty.sqlite").url)
    assert empty.returncode == 2 and "of any board in the history" in empty.stderr and "run the suites first" in \
        empty.stderr, empty.stderr
