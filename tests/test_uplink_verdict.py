"""The delivery verdict as a pure function: each way a stream can go wrong is counted and named."""

from __future__ import annotations

from harness.uplink import Produced, Received, judge
from harness.uplink.verdict import ranges


def delivered(*keys: tuple[str, int]) -> list[Received]:
    return [Received(float(i), run_id, seq) for i, (run_id, seq) in enumerate(keys)]


def test_a_clean_stream_passes_and_duplicates_are_only_counted() -> None:
    produced = Produced(runs=(("a", 1, 5),))
    verdict = judge(produced, delivered(*[("a", s) for s in (1, 2, 3, 3, 4, 5, 5)]), after=0, upto=5)
    assert verdict.passed, verdict.describe()
    assert (verdict.expected, verdict.delivered, verdict.duplicates, verdict.missing) == (5, 5, 2, 0)


def test_a_gap_fails_and_names_the_missing_seqs() -> None:
    produced = Produced(runs=(("a", 1, 30),))
    actual = delivered(*[("a", s) for s in range(1, 31) if not 11 <= s <= 20 and s != 25])
    verdict = judge(produced, actual, after=0, upto=30)
    assert not verdict.passed
    assert verdict.missing == 11
    assert "missing seqs: 11-20, 25" in verdict.describe()


def test_misordered_after_dedup_fails() -> None:
    verdict = judge(Produced(runs=(("a", 1, 4),)), delivered(("a", 1), ("a", 3), ("a", 2), ("a", 4)), 0, 4)
    assert not verdict.passed
    assert verdict.misordered == 1 and "out of order: 2" in verdict.describe()


def test_unexpected_run_ids_and_unreadable_messages_fail() -> None:
    actual = [*delivered(("a", 1), ("b", 2), ("a", 2)), Received(9.0, None, None)]
    verdict = judge(Produced(runs=(("a", 1, 2),)), actual, 0, 2)
    assert not verdict.passed
    assert verdict.unexpected == 2
    assert "b/2" in verdict.describe() and "unreadable message" in verdict.describe()


def test_runs_across_a_restart_and_the_window_bounds() -> None:
    produced = Produced(runs=(("old", 1, 10), ("new", 11, 20)))
    actual = delivered(*[("old", s) for s in range(1, 11)], ("old", 10), *[("new", s) for s in range(11, 25)])
    verdict = judge(produced, actual, after=5, upto=20)  # seqs 1-5 were before the window, 21-24 after it
    assert verdict.passed, verdict.describe()
    assert (verdict.expected, verdict.delivered, verdict.duplicates) == (15, 15, 1)


def test_overflow_drops_are_not_missing_but_must_match_the_module_count() -> None:
    actual = delivered(*[("a", s) for s in range(1, 21) if not 6 <= s <= 10 or s == 7])  # 7 was in flight
    produced = Produced(runs=(("a", 1, 20),), dropped_ranges=((6, 10),), dropped_count=5)
    verdict = judge(produced, actual, 0, 20)
    assert verdict.passed, verdict.describe()
    assert (verdict.dropped, verdict.dropped_delivered, verdict.missing) == (5, 1, 0)
    miscounted = judge(Produced(runs=produced.runs, dropped_ranges=produced.dropped_ranges, dropped_count=3),
                       actual, 0, 20)
    assert not miscounted.passed and "drop record (5) and its drop counter (3) disagree" in miscounted.describe()


def test_drops_after_the_window_count_against_the_counter_read_with_them() -> None:
    """The module went on (seq 30) and dropped 21-22 after the window's end (20): its record still agrees."""
    produced = Produced(runs=(("a", 1, 30),), dropped_ranges=((6, 10), (21, 22)), dropped_count=7)
    actual = delivered(*[("a", s) for s in range(1, 21) if not 6 <= s <= 10])
    verdict = judge(produced, actual, 0, 20)
    assert verdict.passed, verdict.describe()
    assert (verdict.dropped, verdict.module_dropped, verdict.recorded_dropped) == (5, 7, 7)


def test_nothing_produced_is_a_failure() -> None:
    verdict = judge(Produced(runs=()), [], 0, 0)
    assert not verdict.passed and "did not run" in verdict.describe()


def test_ranges_fold_and_sort() -> None:
    assert ranges([5, 1, 2, 3, 9, 8, 2]) == [(1, 3), (5, 5), (8, 9)]
