"""Correctness of the deployed module: golden detections, the model card's floor, message schema, health, model.

The board runs the module over the fixture images (``--fixtures``, default ``fixtures/``) once per
precision (``--precision``). Its detections are compared with golden detections made by the
independent reference (``harness.reference``: another runtime, the letterbox and decode written again),
pinned to the model's hash; and scored for mAP@0.5 against the labels, with the model card's absolute
floor (``<model>.card.json``) less a budget per precision. Neither reference comes from the module.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from harness.accuracy import Box, map50
from harness.board import Board
from harness.deploy import ModuleHandle
from harness.golden import GOLDEN_CONF, GOLDEN_IOU, TOLERANCES, FixtureSet, match_golden
from harness.model_card import ModelCard, card_path
from harness.results import ResultsWriter, RowContext, observations
from module.sources import list_images

#: mAP@0.5 points a precision may lose below the model card's floor
MAP_BUDGET_POINTS = {"fp32": 0.0, "fp16": 0.5, "int8": 2.0}
MESSAGE_FIELDS = {"schema": str, "run_id": str, "seq": int, "frame_id": int, "source": str, "ts": dict,
                  "image": dict, "model_sha256": str, "detections": list}
STAGE_STAMPS = ("capture", "pre", "infer_start", "infer_end", "post", "emit")
HEALTH_WAIT_S = 30.0


@dataclass
class BoardRun:
    precision: str
    quantizer: str | None
    run_id: str
    messages: list[dict]

    def detections(self) -> dict[str, list[Box]]:
        return {
            m["source"]: [Box(d["class_id"], *d["box"], score=d["score"]) for d in m["detections"]]
            for m in self.messages
        }


@pytest.fixture(scope="module")
def golden(fixture_set: FixtureSet, module_info: dict) -> dict[str, list[Box]]:
    """The golden detections, only when they were made for the model the board runs."""
    made_for = fixture_set.load_golden()["model_sha256"]
    if made_for != module_info["model_sha256"]:
        pytest.fail(f"{fixture_set.golden} holds golden detections of model {made_for[:12]}, but the board runs "
                    f"model {module_info['model_sha256'][:12]}: regenerate them for it with `hil golden --keep-images "
                    "--model PATH` (the independent reference), or deploy the model they were made for", pytrace=False)
    return fixture_set.golden_boxes()


@pytest.fixture(scope="module")
def board_images(deployed: ModuleHandle, fixture_set: FixtureSet) -> str:
    return deployed.put_tree(fixture_set.images, "fixture-images")


@pytest.fixture(scope="module")
def board_run(precision: str, deployed: ModuleHandle, module_info: dict, board: Board,
              board_images: str, tmp_path_factory: pytest.TempPathFactory) -> BoardRun:
    """One pass of the module over the fixture images on the board, at one precision."""
    if precision not in module_info["precisions"]:
        pytest.skip(f"the board runs {module_info['backend']} ({module_info['device']}), which runs "
                    f"{', '.join(module_info['precisions'])} only")
    run_id = f"correctness-{precision}-{uuid.uuid4().hex[:6]}"
    work = f"{deployed.root}/data/{run_id}"
    out = f"{work}/detections.jsonl"
    deployed.board.transport.run(f"mkdir -p {shlex.quote(work)}", timeout=30).check()
    result = deployed.run_module(
        ["run", "--source", f"images:{board_images}", "--sink", f"jsonl:{out}", "--exit-when-done",
         "--api-port", "0", "--state-dir", f"{work}/state", "--run-id", run_id, "--precision", precision,
         "--backend", module_info["backend"], "--conf", str(GOLDEN_CONF), "--iou", str(GOLDEN_IOU)],
        timeout=900,
    )
    if not result.ok:
        pytest.fail(f"module run on {board.name} failed (exit {result.exit_code}): "
                    f"{(result.stderr or result.stdout).strip()[-800:]}", pytrace=False)
    local = tmp_path_factory.mktemp(run_id) / "detections.jsonl"
    deployed.board.transport.get(out, local)
    messages = [json.loads(line) for line in local.read_text().splitlines() if line.strip()]
    deployed.board.transport.run(f"rm -rf {shlex.quote(work)}", timeout=60)
    return BoardRun(precision, module_info["quantizers"][precision], run_id, messages)


def _record(results: ResultsWriter, context: RowContext, run: BoardRun, metrics: list[tuple[str, float, str]],
            modeled: frozenset[str]) -> None:
    results.write_all(observations(replace(context, precision=run.precision, quantizer=run.quantizer), metrics,
                                   modeled))


def test_module_reports_the_model_hash_it_was_given(module_info: dict, reference_model_sha: str) -> None:
    assert module_info["model_sha256"] == reference_model_sha


def test_model_is_the_one_its_card_describes(module_info: dict, model_card: ModelCard, local_model: Path) -> None:
    assert model_card.model_sha256 == module_info["model_sha256"], (
        f"{card_path(local_model)} describes model {model_card.model_sha256[:12]}, the board runs "
        f"{module_info['model_sha256'][:12]}: a model ships with its own card (measured on the card's validation set)"
    )


def test_health_endpoint_reports_a_running_pipeline(deployed: ModuleHandle) -> None:
    health = deployed.api("/health")
    assert health["status"] == "running", health
    assert health["error"] is None
    deadline = time.monotonic() + HEALTH_WAIT_S
    stats = deployed.api("/stats")
    while stats["frames"] == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = deployed.api("/stats")
    assert stats["frames"] > 0, f"a running pipeline processed no frame in {HEALTH_WAIT_S:.0f} s: {stats}"
    assert stats["uplink"]["dropped"] == 0
    assert set(stats["latency_ms"]) >= {"preprocess", "infer", "postprocess", "end_to_end"}, stats


def test_detections_match_golden(board_run: BoardRun, golden: dict[str, list[Box]], results: ResultsWriter,
                                 row_context: RowContext, modeled: frozenset[str]) -> None:
    found = match_golden(golden, board_run.detections(), TOLERANCES[board_run.precision])
    _record(results, row_context, board_run, [("golden_match", found.ratio, "ratio"),
                                              ("score_delta_max", found.worst_score_delta, "score")], modeled)
    assert found.expected > 0, "the golden file has no confident detections: regenerate it with `hil golden`"
    assert not found.problems, (f"{len(found.problems)} of {found.expected} golden detections not reproduced:\n"
                                + "\n".join(found.problems[:20]))


def test_map_above_the_model_card_floor(board_run: BoardRun, fixture_set: FixtureSet, model_card: ModelCard,
                                        results: ResultsWriter, row_context: RowContext,
                                        modeled: frozenset[str]) -> None:
    measured = map50(board_run.detections(), fixture_set.load_labels())
    budget = MAP_BUDGET_POINTS[board_run.precision]
    floor = model_card.floors.map50 - budget / 100
    _record(results, row_context, board_run, [("map50", measured, "ratio")], modeled)
    assert measured >= floor, (
        f"mAP@0.5 {measured:.4f} at {board_run.precision} is below the model card's floor {model_card.floors.map50} "
        f"less {budget} points for {board_run.precision} ({floor:.4f}; the card measured "
        f"{model_card.evaluation.map50} on {model_card.evaluation.images} images)"
    )


def test_messages_follow_the_schema(board_run: BoardRun, module_info: dict, fixture_set: FixtureSet) -> None:
    messages = board_run.messages
    assert len(messages) == len(list_images(fixture_set.images))
    for message in messages:
        for field, kind in MESSAGE_FIELDS.items():
            assert isinstance(message.get(field), kind), f"field {field!r} missing or not {kind.__name__}: {message}"
        assert message["run_id"] == board_run.run_id
        assert message["model_sha256"] == module_info["model_sha256"]
        stamps = [message["ts"][k] for k in STAGE_STAMPS]
        assert stamps == sorted(stamps), f"stage timestamps out of order: {message['ts']}"
        for det in message["detections"]:
            assert set(det) == {"class_id", "label", "score", "box"} and len(det["box"]) == 4
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1)), "sequence numbers must be 1..N"
