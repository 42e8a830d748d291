"""Load a YAML file into a pydantic model, turning every mistake into a one-line ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> object:
    """Parse a YAML file; unreadable or malformed files raise ConfigError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read file ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, where, f"invalid YAML: {problem}") from None


def validation_error(path: Path | str, exc: ValidationError) -> ConfigError:
    """Turn a pydantic error into a ConfigError with a dotted field path.

    Unknown fields are reported first: a misspelt field otherwise shows up only as "missing".
    """
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        message = "unknown field (check the spelling against the documented fields)"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif not first["loc"]:  # a cross-field check: its message names the fields itself
        message = first["msg"].removeprefix("Value error, ")
    elif str(first["loc"][-1]).endswith("_env"):  # where a secret gets pasted instead of its variable's name
        message = f"{first['msg']}: name the environment variable that holds the value, never the value itself"
    else:
        message = f"{first['msg']} (got {first['input']!r})"
    return ConfigError(path, field, message)


def load_model(path: Path, model: type[M]) -> M:
    """Read `path` and validate it as `model`."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"expected a mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(path, exc) from None
