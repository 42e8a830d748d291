"""Lab inventory: selection by name, profile and tag; one-line errors for a broken lab.yaml; leases."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from harness.errors import ConfigError, LeaseError, UnknownDeviceError
from harness.inventory import SshTransportConfig, load_lab
from harness.lease import acquire, holder
from harness.profiles import all_profiles

LAB = """\
boards:
  - name: xnx-01
    profile: xavier-nx
    tags: [nightly, jp5]
    transport: {kind: ssh, host: 192.0.2.21, user: nvidia, key: ~/.ssh/lab_key}
  - name: xnx-02
    profile: xavier-nx
    tags: [nightly]
    transport: {kind: ssh, host: 192.0.2.22, port: 2222}
  - name: self
    profile: xavier-nx
    transport: {kind: local}
"""


@pytest.fixture
def lab_file(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB)
    return path


def test_select_by_name_profile_and_tag(lab_file: Path) -> None:
    lab = load_lab(lab_file, all_profiles())
    profiles = all_profiles()
    assert [b.name for b in lab.select("xnx-02", profiles)] == ["xnx-02"]
    assert [b.name for b in lab.select("xavier-nx", profiles)] == ["xnx-01", "xnx-02", "self"]
    assert [b.name for b in lab.select("tag:nightly", profiles)] == ["xnx-01", "xnx-02"]
    first = lab.boards[0].transport
    assert isinstance(first, SshTransportConfig)
    assert first.port == 22 and first.key == Path.home() / ".ssh" / "lab_key"


def test_unknown_selector_lists_what_exists(lab_file: Path) -> None:
    lab = load_lab(lab_file, all_profiles())
    with pytest.raises(UnknownDeviceError) as info:
        lab.select("orin-99", all_profiles())
    message = str(info.value)
    assert "xnx-01, xnx-02, self" in message and "xavier-nx" in message and "nightly" in message
    with pytest.raises(UnknownDeviceError, match="tags: jp5, nightly"):
        lab.select("tag:weekly", all_profiles())


def test_a_board_names_how_the_suites_deploy_to_it(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.replace("tags: [nightly]\n", "tags: [nightly]\n    deploy: docker\n"))
    lab = load_lab(path, all_profiles())
    assert [b.deploy for b in lab.boards] == [None, "docker", None]


IOTHUB = """    iothub:
      device_id: xnx-02
      connection_string_env: LAB_IOTHUB
      registry: {address: lab.azurecr.io, username_env: LAB_ACR_USER, password_env: LAB_ACR_PASSWORD}
"""
SECRET = "HostName=lab.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0LWtleQ=="


FLOOR = ("{power_mode: MODE_15W_6CORE, precision: fp32, batch: 1, backend: onnxruntime, device: cpu, metric: raw_fps, "
         "min: 40}")


def test_the_labs_floors_belong_to_a_board_or_a_profile(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(textwrap.dedent(f"""\
        boards:
          - {{name: nx1, profile: xavier-nx, transport: {{kind: local}}}}
          - {{name: orin1, profile: orin-nano, transport: {{kind: local}}}}
        floors:
          nx1: [{FLOOR}]
          xavier-nx: [{FLOOR.replace("min: 40", "min: 30")}]
        """))
    loaded = load_lab(lab, all_profiles())
    nx1, orin1 = loaded.boards
    assert [floor.min for floor in loaded.floors_for(nx1)] == [40, 30]  # its own, then its profile's
    assert loaded.floors_for(orin1) == []


@pytest.mark.parametrize(("floors", "says"), [
    (f"nx9: [{FLOOR}]", "lab.yaml: floors.nx9: not a board of this lab nor a profile"),
    (f"nx1: [{FLOOR.replace('MODE_15W_6CORE', 'MAXN')}]", "lab.yaml: floors.nx1.0.power_mode: unknown mode 'MAXN'"),
])
def test_a_floor_for_nobody_or_an_unknown_mode_is_one_line(tmp_path: Path, floors: str, says: str) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(f"boards:\n  - {{name: nx1, profile: xavier-nx, transport: {{kind: local}}}}\nfloors:\n  {floors}\n")
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_lab(lab, all_profiles())


def test_a_board_names_its_iot_hub_device_and_the_variables_holding_the_secrets(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.replace("tags: [nightly]\n", "tags: [nightly]\n" + IOTHUB))
    (board,) = [b for b in load_lab(path, all_profiles()).boards if b.iothub]
    assert board.iothub.device_id == "xnx-02" and board.iothub.registry.address == "lab.azurecr.io"
    assert board.iothub.connection_string({"LAB_IOTHUB": SECRET}) == SECRET
    with pytest.raises(ConfigError, match="environment: LAB_IOTHUB: set it to the IoT Hub's service connection"):
        board.iothub.connection_string({})
    with pytest.raises(ConfigError, match="LAB_ACR_PASSWORD"):
        board.iothub.registry.credentials({"LAB_ACR_USER": "lab"})


def test_a_secret_pasted_into_lab_yaml_is_refused_without_repeating_it(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.replace("tags: [nightly]\n", "tags: [nightly]\n" + IOTHUB.replace("LAB_IOTHUB", f'"{SECRET}"')))
    with pytest.raises(ConfigError, match=r"boards\.1\.iothub\.connection_string_env.*name the environment") as info:
        load_lab(path, all_profiles())
    assert "SharedAccessKey" not in str(info.value)


@pytest.mark.parametrize(("broken", "field"), [
    (LAB.replace("profile: xavier-nx\n    tags: [nightly, jp5]", "profile: xavier-nz\n    tags: [nightly, jp5]"),
     "boards.0.profile"),
    (LAB.replace("port: 2222", "port: 99999"), "boards.1.transport.ssh.port"),
    (LAB.replace("kind: local", "kind: serial"), "boards.2.transport"),
    (LAB.replace("name: xnx-02", "name: xnx-01"), "boards.1.name"),
    (LAB.replace("tags: [nightly]\n", "tagz: [nightly]\n"), "boards.1.tagz"),
    (LAB.replace("  - name: self", " - name: self"), "line"),
    (LAB.replace("tags: [nightly]\n", "tags: [nightly]\n    deploy: ftp\n"), "boards.1.deploy"),
])
def test_broken_lab_is_one_line_naming_file_and_field(tmp_path: Path, broken: str, field: str) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(broken)
    with pytest.raises(ConfigError) as info:
        load_lab(path, all_profiles())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ") and field in message


def test_cli_reports_broken_lab_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.replace("port: 2222", "port: many"))
    done = subprocess.run([sys.executable, "-m", "harness", "devices", "--lab", str(path), "--no-check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "port" in lines[0]
    assert "Traceback" not in done.stderr


def test_cli_reports_broken_profile_without_traceback(tmp_path: Path) -> None:
    source = Path(__file__).parents[1] / "device_profiles" / "xavier-nx.yaml"
    broken = tmp_path / "xavier-nx.yaml"
    broken.write_text(source.read_text().replace("cpu_cores: 6", "cpu_cores: six"))
    done = subprocess.run([sys.executable, "-m", "harness", "devices", "--no-check"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"JETSON_HIL_PROFILES": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(broken) in lines[0] and "cpu_cores" in lines[0]


def test_lease_is_exclusive_across_processes(tmp_path: Path) -> None:
    """A board leased by one process is skipped by another; the second board is handed out instead."""
    holder_script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from harness.lease import acquire
        lease = acquire(["a"], Path({str(tmp_path)!r}), timeout=5)
        print("held", flush=True)
        sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder_script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert holder(tmp_path, "a") is not None and holder(tmp_path, "b") is None
        with acquire(["a", "b"], tmp_path, timeout=5) as lease:
            assert lease.board == "b"
            with pytest.raises(LeaseError, match="all boards matching the selector are leased"):
                acquire(["a", "b"], tmp_path, timeout=0.6)
    finally:
        proc.communicate("\n", timeout=10)
    with acquire(["a"], tmp_path, timeout=5) as lease:
        assert lease.board == "a"


def test_a_wait_for_a_busy_board_says_who_holds_it(tmp_path: Path) -> None:
    heard: list[str] = []
    with acquire(["nx-01"], tmp_path, timeout=5, purpose="nightly"), \
            pytest.raises(LeaseError, match=r"nx-01 held by pid \d+ on .* \(nightly\)\); waited 1s"):
        acquire(["nx-01"], tmp_path, timeout=1.0, say=heard.append)
    assert len(heard) == 1 and heard[0].startswith("waiting for a free board (0 of 1 s): nx-01 held by pid")


def test_an_unwritable_lease_folder_is_one_line(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "leases"
    not_a_folder.write_text("a file where the lease folder should be")
    with pytest.raises(LeaseError, match=rf"lease folder {not_a_folder} is not writable .*set lease_dir"):
        acquire(["nx-01"], not_a_folder, timeout=1)


@pytest.mark.sshd
def test_hil_devices_calls_reachable_only_a_port_that_speaks_ssh(sshd_server, tmp_path: Path) -> None:
    silent, chatty = socket.socket(), socket.socket()
    for listener in (silent, chatty):
        listener.bind(("127.0.0.1", 0))
        listener.listen()

    def greet() -> None:  # a service on the port that is not SSH: it speaks first, like an FTP server
        connection, _ = chatty.accept()
        connection.sendall(b"220 ftp ready\r\n")
        connection.close()

    threading.Thread(target=greet, daemon=True).start()
    lab = tmp_path / "lab.yaml"
    lab.write_text(textwrap.dedent(f"""\
        boards:
          - {{name: ssh-ok, profile: nano, transport: {{kind: ssh, host: 127.0.0.1, port: {sshd_server.port}}}}}
          - {{name: silent, profile: nano, transport: {{kind: ssh, host: 127.0.0.1, port: {silent.getsockname()[1]}}}}}
          - {{name: ftp, profile: nano, transport: {{kind: ssh, host: 127.0.0.1, port: {chatty.getsockname()[1]}}}}}
    """))
    done = subprocess.run([sys.executable, "-m", "harness", "devices", "--lab", str(lab)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 5}
    assert "│ yes" in rows["ssh-ok"]
    assert "no (port" in rows["silent"] and "no SSH banner within 2 s" in rows["silent"]
    assert "answers, but not as SSH: b'220 ftp ready" in rows["ftp"]
    silent.close()
    chatty.close()
