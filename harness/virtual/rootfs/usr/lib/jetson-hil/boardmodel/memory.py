"""Memory as the profile's board has it: total and swap of the real board, used = the real board's idle use plus
what the board's processes use now (the container's own memory, from its cgroup) plus what each GPU process holds
in the shared RAM.

A Jetson's GPU has no memory of its own: its allocations (the CUDA context, the network's weights and buffers) are
system RAM, so RAM used rises while a GPU process runs. The virtual board's GPU stand-in runs on the host CPU and
allocates none of that, so the model adds the profile's `gpu_process_mb` per process that stands in for the GPU.
"""

from __future__ import annotations

from .spec import read


def container_used_mb() -> float:
    used = read("/sys/fs/cgroup/memory.current") or read("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    return int(used) / 2**20 if used else 0.0


def memory_mb(calibration: dict, gpu_processes: int, container_mb: float) -> dict[str, float]:
    """`gpu_processes`: the GPU stand-in's processes alive now; `container_mb`: the board's own use."""
    total = calibration["ram_total_mb"]
    used = calibration["ram_idle_mb"] + container_mb + gpu_processes * calibration["gpu_process_mb"]
    return {"ram_used": min(used, total), "ram_total": total, "swap_used": 0.0,
            "swap_total": calibration["swap_total_mb"]}
