"""`hil golden`: regenerate the correctness suite's fixture images, labels and FP32 golden detections."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from harness.golden import DEFAULT_COUNT, FIXTURES, FixtureSet, write_golden, write_images

out = Console()


def golden(
    fixtures: Annotated[Path, typer.Option(help="fixtures folder to write")] = FIXTURES,
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the module's reference model)")] = None,
    count: Annotated[int, typer.Option(min=1, help="number of validation images")] = DEFAULT_COUNT,
    keep_images: Annotated[bool, typer.Option(help="only recompute golden detections for the current images")] = False,
) -> None:
    """Write fixtures/images, fixtures/labels.json and fixtures/golden/detections.json."""
    target = FixtureSet(fixtures)
    if not keep_images:
        write_images(target, count)
        out.print(f"wrote {count} images to {target.images} and labels to {target.labels}")
    result = write_golden(target, model)
    total = sum(len(v) for v in result["images"].values())
    out.print(f"wrote {total} golden detections for model {result['model_sha256'][:12]} to {target.golden}")
