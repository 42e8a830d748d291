"""The board operations against virtual Jetsons of three profiles, over the SSH transport only."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.board import Board
from harness.errors import ConfigError, HarnessError
from harness.profiles import get_profile
from harness.results.modeled import MODELED_FILE, read_modeled
from harness.telemetry.tegrastats import parse_line
from tests.sshd import wait_until

pytestmark = pytest.mark.virtual


@pytest.fixture
def restore_mode(virtual_board: Board) -> Iterator[None]:
    """Every test leaves the board in the mode it found it."""
    before = virtual_board.power_mode()
    yield
    virtual_board.set_power_mode(before.id)


def _fewest_cores_mode(board: Board) -> int:
    return min(board.profile.power_modes, key=lambda m: (m.online_cores, m.id)).id


def test_identity(virtual_board: Board) -> None:
    profile = virtual_board.profile
    identity = virtual_board.identity()
    assert identity.model == profile.device_tree_model
    assert identity.soc == profile.soc
    assert identity.part_number in profile.part_numbers
    assert str(identity.l4t) == profile.virtual.l4t
    assert identity.jetpack is not None
    assert identity.device_tree == "/sys/firmware/devicetree/base"  # the container's fallback


def test_nvpmodel_lists_the_profile_modes(virtual_board: Board) -> None:
    config = virtual_board.nvpmodel.config()
    profile = virtual_board.profile
    assert config.default_id == profile.default_power_mode
    assert [(m.id, m.name, m.online_cores) for m in config.modes] == [
        (m.id, m.name, m.online_cores) for m in profile.power_modes]


def test_set_mode_changes_online_cores(virtual_board: Board, restore_mode: None) -> None:
    profile = virtual_board.profile
    virtual_board.set_power_mode(profile.default_power_mode)
    all_cpus = int(virtual_board.transport.run("nproc", timeout=10).check().stdout)
    low = profile.mode(_fewest_cores_mode(virtual_board))
    result = virtual_board.set_power_mode(low.id)
    assert (result.mode.id, result.mode.name) == (low.id, low.name)
    assert virtual_board.power_mode().id == low.id
    assert virtual_board.telemetry_sample().cpu_online == low.online_cores
    # processes on the board now run on the CPUs the mode leaves online
    share = math.ceil(low.online_cores * all_cpus / profile.cpu_cores)
    assert int(virtual_board.transport.run("nproc", timeout=10).check().stdout) == max(1, min(all_cpus, share))
    # a process started with `docker exec` (not through SSH) is held to them too, within one model step
    from harness.virtual.engine import docker_client

    exec_nproc = docker_client().containers.get(virtual_board.name).exec_run(["sh", "-c", "sleep 1; nproc"])
    assert int(exec_nproc.output) == max(1, min(all_cpus, share)), exec_nproc.output


def test_jetson_clocks_lock_store_restore(virtual_board: Board) -> None:
    clocks = virtual_board.clocks
    assert not clocks.show().locked
    clocks.store("/tmp/l4t_dfs.conf")
    clocks.lock()
    locked = clocks.show()
    assert locked.locked
    gpu = locked.domain("GPU")
    assert gpu is not None and gpu.current == int(virtual_board.profile.mode(
        virtual_board.power_mode().id).gpu_max_mhz * 1_000_000)
    clocks.restore("/tmp/l4t_dfs.conf")
    assert not clocks.show().locked


def test_tegrastats_at_100ms(virtual_board: Board) -> None:
    profile = virtual_board.profile
    lines: list[str] = []
    started = time.monotonic()
    with virtual_board.transport.stream("tegrastats --interval 100", timeout=20) as stream:
        for line in stream.lines():
            lines.append(line)
            if len(lines) == 20:
                break
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 6.0, f"20 samples at 100 ms took {elapsed:.2f}s"
    samples = [parse_line(line) for line in lines]
    for sample in samples:
        assert len(sample.cpus) == profile.cpu_cores
        assert [r.name for r in sample.rails] == profile.telemetry.rails
        assert sample.total_power_mw(profile.telemetry.total_power) > 0
        assert sample.ram_total_mb == round(profile.virtual.model.ram_total_mb)  # the real board's, not the container's
        assert not sample.extra, f"unparsed tegrastats fields: {sample.extra}"


def test_tegrastats_sees_real_load(virtual_board: Board) -> None:
    """Load on the board shows in its CPU figures and raises the modeled power."""
    idle = virtual_board.telemetry_sample(interval_ms=300)
    with virtual_board.transport.stream("timeout 4 sh -c 'while :; do :; done'", timeout=10) as burner:
        busy = virtual_board.telemetry_sample(interval_ms=1000)
        burner.stop()
    rule = virtual_board.profile.telemetry.total_power
    assert max(c.load_pct or 0 for c in busy.cpus) > max(c.load_pct or 0 for c in idle.cpus) + 20
    assert busy.total_power_mw(rule) > idle.total_power_mw(rule)


def test_put_get_roundtrip(virtual_board: Board, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 400
    (tmp_path / "up.bin").write_bytes(payload)
    virtual_board.transport.put(tmp_path / "up.bin", "/tmp/up.bin")
    virtual_board.transport.get("/tmp/up.bin", tmp_path / "down.bin")
    assert (tmp_path / "down.bin").read_bytes() == payload


def test_a_killed_board_model_comes_back_and_tegrastats_carries_on(virtual_board: Board) -> None:
    """The model daemon is the board's hardware: kill -9 it and it is back within a second or two, and a running
    tegrastats keeps printing across the restart (a model gone for good stops it with a line saying so)."""
    run = virtual_board.transport.run
    daemon = "pgrep -f '^/usr/bin/python3 /usr/bin/jetson-model$'"
    before = run(daemon, timeout=10).check().stdout.split()
    with virtual_board.transport.stream("tegrastats --interval 250", timeout=30) as stream:
        lines = stream.lines()
        next(lines)
        run(f"kill -9 {' '.join(before)}", timeout=10).check()
        after_kill = [next(lines) for _ in range(12)]  # 3 s of samples across the restart
    assert all(parse_line(line).rails for line in after_kill)
    wait_until(lambda: run(daemon, timeout=10).ok, 10, "the board model back after kill -9")
    after = run(daemon, timeout=10).check().stdout.split()
    assert after and not set(after) & set(before)


def test_reboot_keeps_files_and_mode(virtual_board: Board, restore_mode: None) -> None:
    low = _fewest_cores_mode(virtual_board)
    virtual_board.set_power_mode(low)
    virtual_board.clocks.lock()
    virtual_board.transport.run("echo kept > /root/marker", timeout=10).check()
    before = virtual_board.boot_id()
    virtual_board.reboot(timeout=120)
    assert virtual_board.boot_id() != before
    assert virtual_board.transport.run("cat /root/marker", timeout=10).check().stdout == "kept\n"
    assert virtual_board.power_mode().id == low  # nvpmodel's mode survives a reboot
    assert not virtual_board.clocks.show().locked  # jetson_clocks does not


@pytest.fixture
def host_server() -> Iterator[int]:
    """A TCP server on the harness host that answers 'hi' (what an MQTT broker will be later)."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"hi")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_uplink_cut_with_iptables_affects_only_the_board(virtual_board: Board, host_server: int) -> None:
    probe = (f"python3 -c \"import socket; s=socket.create_connection(('harness-host', {host_server}), 2); "
             f"print(s.recv(2).decode())\"")
    run = virtual_board.transport.run
    assert run(probe, timeout=15).check().stdout.strip() == "hi"
    rule = f"OUTPUT -p tcp --dport {host_server} -j DROP"
    run(f"iptables -A {rule}", timeout=15).check()
    try:
        assert not run(probe, timeout=15).ok  # the board's uplink is cut
        with socket.create_connection(("127.0.0.1", host_server), timeout=2) as sock:  # the host is not
            assert sock.recv(2) == b"hi"
    finally:
        run(f"iptables -D {rule}", timeout=15).check()
    assert run(probe, timeout=15).check().stdout.strip() == "hi"


@pytest.mark.parametrize("virtual_board", ["xavier-nx"], indirect=True)
def test_hil_probe_virtual_xavier_nx(virtual_board: Board, tmp_path: Path) -> None:
    """`hil probe` reuses the running virtual board (its own lease folder: this session holds ours)."""
    env = {**os.environ, "JETSON_HIL_LEASE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "harness", "probe", "--device", "virtual:xavier-nx",
                           "--lease-timeout", "30"], capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr
    for expected in ("NVIDIA Jetson Xavier NX Developer Kit", "p3668-0001", "32.7.6", "4.6.6",
                     "MODE_15W_6CORE (2)", "power"):
        assert expected in done.stdout
    # no TensorRT on a virtual board: its inventory entry asks for ONNX Runtime on the CPU, and the line says so
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("module: ")]
    assert line.startswith("module: JetPack 4.6.6 · Python 3.")
    assert line.endswith("· no TensorRT · no CUDA runtime → onnxruntime (asked for)")


@pytest.mark.parametrize("virtual_board", ["xavier-nx"], indirect=True)
def test_a_board_given_another_models_profile_is_refused(virtual_board: Board) -> None:
    """An inventory typo: the Xavier NX entered as an AGX Xavier (same SoC, other nvpmodel ids)."""
    typo = Board("nx-01", get_profile("agx-xavier"), virtual_board.transport)
    with pytest.raises(ConfigError) as refused:
        typo.check_identity()
    message = str(refused.value)
    assert message.startswith("board nx-01: profile: the inventory gives it profile agx-xavier")
    assert "'NVIDIA Jetson Xavier NX Developer Kit'" in message and "p3668-0001" in message
    Board("nx-01", get_profile("xavier-nx"), virtual_board.transport).check_identity()  # the right one passes


@pytest.mark.parametrize("virtual_board", ["nano"], indirect=True)
def test_modeled_file_that_cannot_be_read_fails_closed(virtual_board: Board) -> None:
    run = virtual_board.transport.run
    assert read_modeled(virtual_board) >= {"power", "temperature"}
    run(f"mv {MODELED_FILE} {MODELED_FILE}.away && mkdir {MODELED_FILE}", timeout=15).check()
    try:
        with pytest.raises(HarnessError, match=f"cannot read {MODELED_FILE}"):
            read_modeled(virtual_board)  # never "everything measured"
    finally:
        run(f"rmdir {MODELED_FILE} && mv {MODELED_FILE}.away {MODELED_FILE}", timeout=15).check()


@pytest.mark.parametrize("virtual_board", ["nano"], indirect=True)
def test_power_cycle_waits_for_the_new_boot(virtual_board: Board) -> None:
    """A PDU command that returns at once and cuts power a moment later: power_cycle must not return before."""
    name = virtual_board.name
    pdu = f"sh -c '(sleep 2; docker restart -t 0 {name}) >/dev/null 2>&1 &'"
    cycled = Board(name, virtual_board.profile, virtual_board.transport, power_cycle=pdu)
    before = cycled.boot_id()
    cycled.power_cycle(timeout=120)
    assert cycled.boot_id() != before
