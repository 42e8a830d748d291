"""Correctness of the deployed module: golden detections, mAP budget, message schema, health, model hash.

The board runs the module over the fixture images (``fixtures/``) once per precision its backend
offers; detections are compared with the FP32 golden outputs computed on the harness host.
"""

from __future__ import annotations

import json
import shlex
import uuid
from dataclasses import dataclass, replace

import pytest

from harness.accuracy import Box, iou, map50
from harness.board import Board
from harness.deploy import ModuleHandle
from harness.golden import GOLDEN_CONF, GOLDEN_IOU, FixtureSet, boxes_from_json
from harness.results import ResultsWriter, RowContext, observations
from module.backends import PRECISIONS
from module.sources import list_images

FIXTURES = FixtureSet()
#: mAP@0.5 points a precision may lose against the FP32 golden run on the same images
MAP_BUDGET_POINTS = {"fp32": 0.1, "fp16": 0.5, "int8": 2.0}


@dataclass(frozen=True)
class Tolerance:
    """How close a board detection must be to its golden twin: IoU, score, and which ones must match."""

    min_iou: float
    max_score_delta: float
    confident: float = 0.5  # golden boxes above this score must be found


TOLERANCES = {"fp32": Tolerance(0.99, 0.01), "fp16": Tolerance(0.9, 0.05), "int8": Tolerance(0.8, 0.1)}
MESSAGE_FIELDS = {"schema": str, "run_id": str, "seq": int, "frame_id": int, "source": str, "ts": dict,
                  "image": dict, "model_sha256": str, "detections": list}
STAGE_STAMPS = ("capture", "pre", "infer_start", "infer_end", "post", "emit")


@dataclass
class BoardRun:
    precision: str
    run_id: str
    messages: list[dict]

    def detections(self) -> dict[str, list[Box]]:
        return {
            m["source"]: [Box(d["class_id"], *d["box"], score=d["score"]) for d in m["detections"]]
            for m in self.messages
        }


@pytest.fixture(scope="module")
def board_images(deployed: ModuleHandle) -> str:
    return deployed.put_tree(FIXTURES.images, "fixture-images")


@pytest.fixture(scope="module", params=PRECISIONS)
def board_run(request: pytest.FixtureRequest, deployed: ModuleHandle, module_info: dict, board: Board,
              board_images: str, tmp_path_factory: pytest.TempPathFactory) -> BoardRun:
    """One pass of the module over the fixture images on the board, at one precision."""
    precision = request.param
    if not board.profile.supports(precision):
        pytest.skip(f"{board.profile.name} has no {precision}")
    if precision not in module_info["precisions"]:
        pytest.skip(f"the board runs {module_info['backend']} ({module_info['device']}), which runs "
                    f"{', '.join(module_info['precisions'])} only; {precision} needs TensorRT")
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
        pytest.fail(f"module run on {board.name} failed (exit {result.exit_status}): "
                    f"{(result.stderr or result.stdout).strip()[-800:]}", pytrace=False)
    local = tmp_path_factory.mktemp(run_id) / "detections.jsonl"
    deployed.board.transport.get(out, local)
    messages = [json.loads(line) for line in local.read_text().splitlines() if line.strip()]
    deployed.board.transport.run(f"rm -rf {shlex.quote(work)}", timeout=60)
    return BoardRun(precision, run_id, messages)


def _record(results: ResultsWriter, context: RowContext, metrics: list[tuple[str, float, str]], modeled) -> None:
    results.write_all(observations(context, metrics, modeled))


def test_module_reports_the_model_hash_it_was_given(module_info: dict, reference_model_sha: str) -> None:
    assert module_info["model_sha256"] == reference_model_sha


def test_health_endpoint_reports_a_running_pipeline(deployed: ModuleHandle) -> None:
    health = deployed.api("/health")
    assert health["status"] == "running", health
    assert health["error"] is None
    stats = deployed.api("/stats")
    assert stats["uplink"]["dropped"] == 0
    assert set(stats["latency_ms"]) >= {"preprocess", "infer", "postprocess", "end_to_end"} or stats["frames"] == 0


def test_detections_match_golden(board_run: BoardRun, results: ResultsWriter, row_context: RowContext,
                                 modeled: frozenset[str]) -> None:
    golden = FIXTURES.load_golden()
    tol = TOLERANCES[board_run.precision]
    got = board_run.detections()
    problems: list[str] = []
    matched = expected = 0
    worst_delta = 0.0
    for image, rows in golden["images"].items():
        candidates = [d for d in got.get(image, []) if d.score >= tol.confident * 0.5]
        for want in (b for b in boxes_from_json(rows) if b.score >= tol.confident):
            expected += 1
            same_class = [d for d in candidates if d.class_id == want.class_id]
            best = max(same_class, key=lambda d: iou(d, want), default=None)
            if best is None or iou(best, want) < tol.min_iou:
                problems.append(f"{image}: class {want.class_id} at {want.x1:.0f},{want.y1:.0f} not found "
                                f"(best IoU {iou(best, want) if best else 0:.3f} < {tol.min_iou})")
                continue
            delta = abs(best.score - want.score)
            worst_delta = max(worst_delta, delta)
            if delta > tol.max_score_delta:
                problems.append(f"{image}: class {want.class_id} score {best.score:.3f} vs golden {want.score:.3f}")
                continue
            matched += 1
    context = replace(row_context, precision=board_run.precision)
    _record(results, context, [("golden_match", matched / max(expected, 1), "ratio"),
                               ("score_delta_max", worst_delta, "score")], modeled)
    assert expected > 0, "the golden file has no confident detections: regenerate it with `hil golden`"
    assert not problems, f"{len(problems)} of {expected} golden detections not reproduced:\n" + "\n".join(problems[:20])


def test_map_within_budget_of_the_model_card(board_run: BoardRun, results: ResultsWriter,
                                             row_context: RowContext, modeled: frozenset[str]) -> None:
    truth = FIXTURES.load_labels()
    reference = FIXTURES.load_golden()["map50"]
    measured = map50(board_run.detections(), truth)
    budget = MAP_BUDGET_POINTS[board_run.precision]
    _record(results, replace(row_context, precision=board_run.precision), [("map50", measured, "ratio")], modeled)
    assert measured * 100 >= reference * 100 - budget, (
        f"mAP@0.5 {measured:.4f} at {board_run.precision} is more than {budget} points below the FP32 "
        f"reference {reference:.4f} (model card)"
    )


def test_messages_follow_the_schema(board_run: BoardRun, module_info: dict) -> None:
    messages = board_run.messages
    assert len(messages) == len(list_images(FIXTURES.images))
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
