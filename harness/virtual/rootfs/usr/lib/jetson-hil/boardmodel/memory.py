"""Memory as the profile's board has it: total and swap of the real board, used = the real board's idle use plus
what the board's processes use now (the container's own memory, from its cgroup)."""

from __future__ import annotations

from .spec import read


def container_used_mb() -> float:
    used = read("/sys/fs/cgroup/memory.current") or read("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    return int(used) / 2**20 if used else 0.0


def memory_mb(calibration: dict) -> dict[str, float]:
    total = calibration["ram_total_mb"]
    return {"ram_used": min(calibration["ram_idle_mb"] + container_used_mb(), total), "ram_total": total,
            "swap_used": 0.0, "swap_total": calibration["swap_total_mb"]}
