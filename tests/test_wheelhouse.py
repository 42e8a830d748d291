"""The board's Python probe decides which wheels the harness downloads for it."""

from __future__ import annotations

import pytest

from harness.deploy.wheelhouse import parse_probe
from harness.errors import DeployError


@pytest.mark.parametrize(
    ("text", "tag"),
    [("3 8 aarch64 glibc 2.31", "cp38-aarch64-glibc2.31"), ("3 11 x86_64 glibc 2.36", "cp311-x86_64-glibc2.36")],
)
def test_board_python_probe_gives_the_wheel_target(text: str, tag: str) -> None:
    target = parse_probe(text)
    assert target.tag == tag
    assert target.platforms()[0] == f"manylinux_2_{text.split()[-1].split('.')[1]}_{text.split()[2]}"


@pytest.mark.parametrize("text", ["", "bash: python3: command not found", "3 6 aarch64 glibc 2.27"])
def test_a_board_without_a_usable_python_is_refused_clearly(text: str) -> None:
    with pytest.raises(DeployError, match=r"python|Python"):
        parse_probe(text)
