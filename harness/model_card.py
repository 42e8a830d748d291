"""The model card in machine-readable form: which model it describes and the floor the suites hold it to.

`<model>.card.json` sits beside the ONNX file (`module/models/shapes-det.card.json` for the shipped
model) and says what the model scored when it was released, on images the code under test never
produced, and the absolute mAP floor every board must reach on the correctness fixtures. The
correctness suite reads it from the module folder it deploys; it never derives a reference from a
run of the module itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.yamlfile import load_model

SUFFIX = ".card.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Evaluation(_Strict):
    """What the card's figures were measured on and with."""

    images: int = Field(gt=0)
    seeds: str
    protocol: str
    runtime: str
    map50: float = Field(gt=0, le=1)
    map50_95: float = Field(gt=0, le=1)


class Floors(_Strict):
    """Absolute minimums on the correctness fixtures at FP32; reduced precisions subtract their budget."""

    map50: float = Field(gt=0, le=1)
    why: str


class ModelCard(_Strict):
    schema_: str = Field(alias="schema", pattern=r"^jetson-hil\.model-card/1$")
    model: str
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    evaluation: Evaluation
    floors: Floors


def card_path(model: Path) -> Path:
    return model.with_name(model.stem + SUFFIX)


def load_card(model: Path) -> ModelCard:
    """The card beside `model`; a missing or malformed card is a ConfigError naming the file and field."""
    return load_model(card_path(model), ModelCard)
