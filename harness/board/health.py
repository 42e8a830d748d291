"""A board's health check before a session uses it (LAVA's health checks): it answers, it is the board its
profile says (its L4T in the profile's range), it has room on disk and in memory, no fault rule is left on it,
it is not hot at idle and its clock agrees with the controller's. One SSH round trip; each problem is one line
naming what to do."""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.board.board import Board
from harness.board.identity import l4t_outside
from harness.errors import HarnessError

#: one shell pass: every fact the check needs, `name value` per line (root reads the fault rules; others skip them)
PROBE = (
    "df -Pk / | awk 'NR==2 {print \"disk_kb\", $4}'; "
    "awk '/^MemAvailable:/ {print \"memory_kb\", $2}' /proc/meminfo; "
    "for zone in /sys/class/thermal/thermal_zone*/temp; do [ -r \"$zone\" ] && echo \"temp_mc $(cat \"$zone\")\"; "
    "done; "
    "if [ \"$(id -u)\" = 0 ] && command -v iptables >/dev/null; then "
    "echo \"fault_rules $( (iptables -S; iptables -t nat -S) 2>/dev/null | grep -c JETSON_HIL_)\"; fi; "
    "echo \"clock $(date +%s)\""
)


@dataclass(frozen=True)
class HealthLimits:
    min_disk_mb: float = 1024.0
    min_memory_mb: float = 256.0
    max_idle_temp_c: float = 80.0
    max_clock_skew_s: float = 5.0


def health_problems(board: Board, limits: HealthLimits = HealthLimits()) -> list[str]:
    """What is wrong with a connected board, empty when it is fit for a session."""
    try:
        board.check_identity()
        outside = l4t_outside(board.identity(), board.profile)
        asked = time.time()
        done = board.transport.run(PROBE, timeout=20)
        answered = time.time()
    except HarnessError as exc:
        return [str(exc)]
    facts: dict[str, list[float]] = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition(" ")
        try:
            facts.setdefault(name, []).append(float(value))
        except ValueError:
            continue
    problems = [f"{outside}: widen the profile's l4t range once its figures are checked on it"] if outside else []
    if facts.get("disk_kb") and facts["disk_kb"][0] / 1024 < limits.min_disk_mb:
        problems.append(f"{facts['disk_kb'][0] / 1024:.0f} MB free on / (wants {limits.min_disk_mb:.0f}): "
                        "clear old engines and logs")
    if facts.get("memory_kb") and facts["memory_kb"][0] / 1024 < limits.min_memory_mb:
        problems.append(f"{facts['memory_kb'][0] / 1024:.0f} MB memory available (wants {limits.min_memory_mb:.0f}): "
                        "a stray process holds it")
    if facts.get("fault_rules") and facts["fault_rules"][0] > 0:
        problems.append(f"{facts['fault_rules'][0]:.0f} leftover JETSON_HIL_ firewall rules: a fault was not undone")
    hot = [t / 1000 for t in facts.get("temp_mc", []) if t / 1000 > limits.max_idle_temp_c]
    if hot:
        problems.append(f"{max(hot):.0f} C at idle (over {limits.max_idle_temp_c:.0f} C): check its cooling")
    if facts.get("clock"):
        skew = facts["clock"][0] - (asked + answered) / 2
        if abs(skew) > limits.max_clock_skew_s + 1:  # `date +%s` has one second of resolution
            problems.append(f"its clock is {skew:+.0f} s off the controller's: set up NTP on it")
    return problems
