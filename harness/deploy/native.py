"""Native deployment over SSH: bundle and wheels over SFTP when their hashes changed, a virtualenv,
and the module kept running by systemd (where it runs) or by the bundled supervisor script.

The whole state check is one remote command, so redeploying an unchanged module costs one
round trip plus a health check.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from harness.board import Board
from harness.board.boot import rc_local_entry
from harness.board.stack import BoardStack
from harness.errors import DeployError
from harness.transport.base import CommandResult

from .bundle import MODULE_DIR, module_bundle, requirements_text
from .handle import SYSTEMD_UNIT as UNIT
from .handle import DeployReport, ModuleHandle, put_bytes
from .readiness import readiness_of
from .service import ServiceSpec
from .wheelhouse import PIP_BOOTSTRAP, PythonTarget, requirements_for, requirements_sha, wheelhouse

ROOT_NAME = "jetson-hil"
STOP_TIMEOUT_S = 20
INSTALL_TIMEOUT_S = 900

_STATUS = """set -u
root=${{JETSON_HIL_ROOT:-$HOME/{name}}}
mkdir -p "$root/run" "$root/logs" "$root/state" "$root/engines" "$root/wheels"
echo "root=$root"
echo "bundle=$(cat "$root/app/MANIFEST" 2>/dev/null)"
echo "venv=$(cat "$root/venv/.jetson-hil-requirements" 2>/dev/null)"
echo "service=$(cat "$root/run/service" 2>/dev/null)"
pid=$(cat "$root/run/supervisor.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null && echo "supervisor=alive"
[ -d /run/systemd/system ] && echo "systemd=yes"
systemctl is-active --quiet {unit} 2>/dev/null && echo "unit=active"
true  # the state is what was printed: an inactive unit is no failure to read it
"""


def _status(board: Board, root: str | None = None) -> dict[str, str]:
    """What is on the board at `root` (default: ~/jetson-hil, or $JETSON_HIL_ROOT there)."""
    script = _STATUS.format(name=ROOT_NAME, unit=UNIT)
    env = f"JETSON_HIL_ROOT={shlex.quote(root)} " if root else ""
    result = board.transport.run(f"{env}sh -c {shlex.quote(script)}", timeout=30)
    if not result.ok:
        raise DeployError(f"{board.name}: cannot read deployment state: {result.stderr.strip() or result.stdout}")
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def _check(result: CommandResult, board: Board, step: str) -> CommandResult:
    if not result.ok:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
        raise DeployError(f"{board.name}: {step} failed (exit {result.exit_code}): {' | '.join(detail)}")
    return result


def python_target(stack: BoardStack, board: str) -> PythonTarget:
    """What the board's wheels must match, from its stack."""
    if stack.glibc is None:
        raise DeployError(f"{board}: its python3 does not run on glibc ({stack.machine}); the module's wheels need it")
    glibc_major, glibc_minor = (int(part) for part in stack.glibc.split(".")[:2])
    return PythonTarget(*stack.python_version, stack.machine, (glibc_major, glibc_minor))


#: what JetPack brings itself when the board has it: its OpenCV is built for the board (GStreamer, CUDA)
SYSTEM_PACKAGES = {"opencv-python-headless": lambda stack: stack.opencv is not None}


@dataclass(frozen=True)
class Staged:
    """Where the module's code and virtualenv are on the board, what staging them had to do, and the board's
    deployment state as read before."""

    root: str
    copied: bool
    installed: bool
    state: dict[str, str]


class NativeDeployer:
    """Deploys ``module/`` to one board and returns a handle to the running service."""

    def __init__(self, board: Board, module_dir: Path = MODULE_DIR, console: Console | None = None):
        self.board = board
        self.module_dir = module_dir
        self.console = console or Console(stderr=True)

    def _say(self, text: str) -> None:
        self.console.print(f"[bold]{self.board.name}[/]: {text}")

    def stage(self, root: str | None = None) -> Staged:
        """The module's code and virtualenv at `root` on the board (default: ~/jetson-hil), copying and
        installing only what changed."""
        state = _status(self.board, root)
        root = state["root"]
        bundle = module_bundle(self.module_dir)
        copied = state.get("bundle") != bundle.sha256
        if copied:
            self._copy_bundle(root, bundle.tarball(), bundle.sha256)
        stack = self.board.stack()
        target = python_target(stack, self.board.name)
        skip = [name for name, present in SYSTEM_PACKAGES.items() if present(stack)]
        requirements = requirements_for(requirements_text(self.module_dir), skip)
        req_sha = requirements_sha(requirements, target)
        installed = state.get("venv") != req_sha
        if installed:
            self._install(root, requirements, target, req_sha)
        return Staged(root, copied, installed, state)

    def deploy(self, service: ServiceSpec | None = None) -> ModuleHandle:
        service = service or ServiceSpec()
        started = time.monotonic()
        readiness = readiness_of(self.board, service.backend)
        service = replace(service, backend=readiness.check())  # refused here, before anything is copied
        self._say(readiness.line())
        staged = self.stage()
        root, copied, installed, state = staged.root, staged.copied, staged.installed, staged.state
        manager = "systemd" if state.get("systemd") == "yes" else "supervisor"
        running = state.get("unit") == "active" if manager == "systemd" else state.get("supervisor") == "alive"
        restart = copied or installed or not running or state.get("service") != service.sha(root)
        if restart:
            self._stop(root, manager)
            self._start(root, service, manager)
        report = DeployReport(copied, installed, restart, round(time.monotonic() - started, 2), manager)
        handle = ModuleHandle(self.board, root, service.api_port, report, lambda: self._stop(root, manager))
        return handle.await_ready(self._say, started, "unchanged, nothing copied")

    # steps ----------------------------------------------------------------------------------------
    def _copy_bundle(self, root: str, tarball: bytes, sha: str) -> None:
        self._say(f"copying module bundle ({len(tarball) / 1e6:.1f} MB)")
        q = shlex.quote
        put_bytes(self.board, tarball, f"{root}/app.tar.gz")
        script = (
            f"cd {q(root)} && rm -rf app.new && mkdir app.new && tar -xzf app.tar.gz -C app.new && "
            f"mv app.new/module/supervise.sh app.new/ && echo {sha} > app.new/MANIFEST && "
            f"rm -rf app && mv app.new app && rm -f app.tar.gz"
        )
        _check(self.board.transport.run(script, timeout=120), self.board, "unpacking the module bundle")

    def _install(self, root: str, requirements: str, target: PythonTarget, req_sha: str) -> None:
        # the venv starts with the distro's pip (9.0.1 on JetPack 4, 20.0.2 on JetPack 5), which cannot install
        # manylinux2014 or manylinux_2_x wheels: a newer pip from the same wheelhouse goes in first
        wheels = wheelhouse(f"{requirements}\n{PIP_BOOTSTRAP}\n", target, self.console)
        q = shlex.quote
        present = set(self.board.transport.run(f"ls {q(root)}/wheels", timeout=30).stdout.split())
        missing = sorted(p for p in wheels.glob("*.whl") if p.name not in present)
        total = sum(p.stat().st_size for p in missing)
        if missing:
            self._say(f"copying {len(missing)} wheels ({total / 1e6:.0f} MB) for {target.tag}")
        for index, path in enumerate(missing, 1):
            self.console.print(f"  [{index}/{len(missing)}] {path.name}", highlight=False)
            self.board.transport.put(path, f"{root}/wheels/{path.name}")
        put_bytes(self.board, requirements.encode(), f"{root}/wheels/requirements.txt")
        self._say("installing the module's Python dependencies into a virtualenv")
        venv = f"{root}/venv"
        script = (
            f"set -e; [ -x {q(venv)}/bin/python ] || python3 -m venv --system-site-packages {q(venv)}; "
            f"{q(venv)}/bin/python -m pip install --quiet --no-index --disable-pip-version-check "
            f"--find-links {q(root)}/wheels {q(PIP_BOOTSTRAP)}; "
            f"{q(venv)}/bin/python -m pip install --quiet --no-index --disable-pip-version-check "
            f"--find-links {q(root)}/wheels -r {q(root)}/wheels/requirements.txt; "
            f"echo {req_sha} > {q(venv)}/.jetson-hil-requirements"
        )
        result = self.board.transport.run(script, timeout=INSTALL_TIMEOUT_S)
        if not result.ok and "ensurepip" in (result.stdout + result.stderr):
            raise DeployError(f"{self.board.name}: python3 has no venv support: install python3-venv on the board")
        _check(result, self.board, "installing the module's dependencies")

    def _start(self, root: str, service: ServiceSpec, manager: str) -> None:
        q = shlex.quote
        command = service.command(root)
        s = self.board.sudo
        record = f"echo {service.sha(root)} > {q(root)}/run/service"
        if manager == "systemd":
            unit = (
                f"[Unit]\nDescription=jetson-hil reference detection module\nAfter=network-online.target\n\n"
                f"[Service]\nWorkingDirectory={root}/app\nEnvironment=JETSON_HIL_ENGINE_CACHE={root}/engines\n"
                f"ExecStart={command}\nRestart=always\nRestartSec=2\nRestartPreventExitStatus=2\n"
                f"StandardOutput=append:{root}/logs/module.log\nStandardError=append:{root}/logs/module.log\n\n"
                f"[Install]\nWantedBy=multi-user.target\n"
            )
            put_bytes(self.board, unit.encode(), f"{root}/run/{UNIT}.service")
            script = (
                f"{s}install -m 644 {q(root)}/run/{UNIT}.service /etc/systemd/system/{UNIT}.service && "
                f"{s}systemctl daemon-reload && {s}systemctl enable {UNIT} && {s}systemctl restart {UNIT} && {record}"
            )
        else:
            # the whole background list is redirected, so the SSH channel closes at once; the same script runs
            # at boot from /etc/rc.local (as this user), so the module comes back after a reboot as under systemd
            boot = (
                f"#!/bin/sh\n(cd {q(root)} && JETSON_HIL_ENGINE_CACHE={q(root)}/engines exec setsid sh "
                f"app/supervise.sh {q(root)} {command}) >/dev/null 2>&1 </dev/null &\n"
            )
            put_bytes(self.board, boot.encode(), f"{root}/run/boot.sh")
            mark = f"# jetson-hil module {root}"
            owner = f"\"$(stat -c %U {q(root)})\""
            at_boot = f"[ -x {q(root)}/run/boot.sh ] && su -s /bin/sh {owner} -c {q(root)}/run/boot.sh"
            script = (
                f"chmod 755 {q(root)}/run/boot.sh && {s}sh -c {q(rc_local_entry(at_boot, mark))} && "
                f"sh {q(root)}/run/boot.sh && {record}"
            )
        self._say(f"starting the module ({manager})")
        _check(self.board.transport.run(script, timeout=60), self.board, "starting the module")

    def _stop(self, root: str, manager: str) -> None:
        q = shlex.quote
        if manager == "systemd":
            script = f"{self.board.sudo}systemctl stop {UNIT} 2>/dev/null; true"
        else:
            pidfile = f"{q(root)}/run/supervisor.pid"
            script = (
                f"pid=$(cat {pidfile} 2>/dev/null) || exit 0; kill -TERM $pid 2>/dev/null || exit 0; "
                f"i=0; while kill -0 $pid 2>/dev/null && [ $i -lt {STOP_TIMEOUT_S * 10} ]; "
                f"do sleep 0.1; i=$((i+1)); done; "
                f"if kill -0 $pid 2>/dev/null; then kill -KILL $pid $(cat {q(root)}/run/module.pid 2>/dev/null); "
                f"echo 'module did not stop in {STOP_TIMEOUT_S} s: killed'; fi; rm -f {pidfile}"
            )
        result = self.board.transport.run(script, timeout=STOP_TIMEOUT_S + 15)
        if result.stdout.strip():
            self._say(result.stdout.strip())


def deploy_native(board: Board, service: ServiceSpec | None = None, console: Console | None = None) -> ModuleHandle:
    """Deploy the repo's module to ``board`` (copying only what changed) and return its handle."""
    return NativeDeployer(board, console=console).deploy(service)
