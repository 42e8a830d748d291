"""A Board: typed operations on one Jetson over any transport."""

from harness.board.board import Board

__all__ = ["Board"]
