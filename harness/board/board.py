"""Board: identity, power mode, clocks, telemetry and reboot on one Jetson, over a Transport.

The same class serves a real board and a virtual one: what differs lives on the far side of
the transport.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
import time
from dataclasses import dataclass
from functools import cached_property

from harness.board.identity import Identity, l4t_outside, profile_mismatch, read_identity
from harness.board.jetson_clocks import ClocksStatus, JetsonClocks
from harness.board.nvpmodel import Nvpmodel, PowerModeState
from harness.board.stack import BoardStack, read_stack
from harness.board.state import DEFAULT_TIMEOUT_S as DEFAULT_WATCHDOG_S
from harness.board.state import BoardState
from harness.errors import CommandFailed, ConfigError, HarnessError, TransportError
from harness.profiles import DeviceProfile
from harness.telemetry.tegrastats import TegrastatsSample, parse_line
from harness.transport.base import Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetResult:
    """The power mode after a switch, and whether the switch rebooted the board."""

    mode: PowerModeState
    reboot_required: bool


class Board:
    """One leased board: name from the inventory, its profile, and the transport that reaches it."""

    def __init__(self, name: str, profile: DeviceProfile, transport: Transport,
                 power_cycle: str | None = None, watchdog_s: float = DEFAULT_WATCHDOG_S,
                 backend: str = "auto") -> None:
        self.name = name
        self.profile = profile
        self.transport = transport
        self.power_cycle_command = power_cycle
        #: why the board stopped answering mid-session (set by whoever found out); nothing is sent to it after
        self.lost: str | None = None
        self._identity: Identity | None = None
        self._stack: BoardStack | None = None
        #: the module's backend on this board unless a run asks for another (the inventory's `backend:`)
        self.backend = backend
        #: every change a session makes to the board goes through here (journal, heartbeat, restore)
        self.state = BoardState(self, timeout_s=watchdog_s)

    def __repr__(self) -> str:
        return f"Board({self.name!r}, profile={self.profile.name!r}, via={self.transport.target})"

    @cached_property
    def sudo(self) -> str:
        """Command prefix for root-only tools: empty as root, else non-interactive sudo."""
        uid = self.transport.run("id -u", timeout=15).check().stdout.strip()
        return "" if uid == "0" else "sudo -n "

    def run_root(self, script: str, what: str, timeout: float = 30, stdin: str | None = None) -> str:
        """`script` as root on the board (through sudo where the login is not root); its stdout, or HarnessError
        naming the board and `what` failed with the script's last line of error."""
        result = self.transport.run(f"{self.sudo}sh -c {shlex.quote(script)}", timeout=timeout, stdin=stdin)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit {result.exit_code}"]
            raise HarnessError(f"{self.name}: {what} failed: {detail[0]}")
        return result.stdout

    @cached_property
    def nvpmodel(self) -> Nvpmodel:
        return Nvpmodel(self.transport, self.sudo)

    @cached_property
    def clocks(self) -> JetsonClocks:
        return JetsonClocks(self.transport, self.sudo)

    def identity(self) -> Identity:
        """Read once per Board: who a board is does not change while it is leased."""
        if self._identity is None:
            self._identity = read_identity(self.transport)
        return self._identity

    def stack(self) -> BoardStack:
        """Read once per Board, like the identity: what the module will find on the board (Python, TensorRT,
        CUDA runtime, OpenCV)."""
        if self._stack is None:
            self._stack = read_stack(self.transport, self.name)
        return self._stack

    def check_identity(self) -> None:
        """Refuse a board whose identity contradicts its profile (an inventory typo would apply another
        model's nvpmodel ids and label every result wrongly); warn when its L4T is outside the profile's range."""
        identity = self.identity()
        problem = profile_mismatch(identity, self.profile)
        if problem:
            raise ConfigError(f"board {self.name}", "profile",
                              f"the inventory gives it profile {self.profile.name} ({self.profile.display_name}) "
                              f"but the board reports {identity.model!r}: {problem}; fix its profile in the lab "
                              "inventory (or add this module to the profile if it is a variant of that model)")
        outside = l4t_outside(identity, self.profile)
        if outside:
            log.warning("%s: %s; figures may not compare with the profile's", self.name, outside)

    def power_mode(self) -> PowerModeState:
        return self.nvpmodel.query()

    def set_power_mode(self, mode: int | str, *, allow_reboot: bool = False) -> SetResult:
        """Switch power mode (by id or name from the profile); reboot only when allowed and required.

        Already in that mode: nothing is switched."""
        target = self.profile.mode(mode)
        current = self.power_mode()
        if current.id == target.id:
            return SetResult(current, False)
        before = self.boot_id() if allow_reboot else None
        reboot_required = self.nvpmodel.set(target.id, accept_reboot=allow_reboot)
        if reboot_required and not allow_reboot:
            raise HarnessError(f"{self.name}: power mode {target.name} needs a reboot; "
                               "pass allow_reboot=True to switch")
        if reboot_required:
            self.wait_back(previous_boot=before)
        return SetResult(self.power_mode(), reboot_required)

    def clocks_status(self) -> ClocksStatus:
        return self.clocks.show()

    def tegrastats_command(self, interval_ms: int, *, line_buffered: bool = False) -> str:
        """tegrastats as root: as a normal user it omits clocks everywhere and rails on AGX Orin.

        `line_buffered` for a pipe: stdio buffers a pipe in blocks, which would batch lines and their stamps."""
        buffering = "stdbuf -oL " if line_buffered else ""
        return f"{self.sudo}{buffering}tegrastats --interval {int(interval_ms)}"

    def telemetry_sample(self, interval_ms: int = 100, timeout: float = 15.0) -> TegrastatsSample:
        """One tegrastats sample (the first line it prints at `interval_ms`)."""
        command = self.tegrastats_command(interval_ms)
        with self.transport.stream(command, timeout=timeout) as stream:
            for line in stream.lines():
                if line.strip():
                    return parse_line(line)
        raise CommandFailed(f"{self.name}: `{command}` printed nothing within {timeout:.0f}s")

    def boot_id(self) -> str:
        """What changes on every boot: the kernel's boot id and the start time of PID 1 (init)."""
        command = "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f22 /proc/1/stat"
        return " ".join(self.transport.run(command, timeout=10).check().stdout.split())

    def reboot(self, timeout: float = 300.0) -> None:
        """Reboot and wait until the board answers again from a new boot."""
        before = self.boot_id()
        with contextlib.suppress(TransportError):  # the connection may drop before the command returns
            self.transport.run(f"{self.sudo}sh -c 'sleep 1; reboot' >/dev/null 2>&1 &", timeout=15)
        self.wait_back(timeout, previous_boot=before)

    def wait_back(self, timeout: float = 300.0, previous_boot: str | None = None) -> None:
        """Reconnect (with backoff) until the board answers, and from a new boot when `previous_boot` is set."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(f"{self.name}: did not come back within {timeout:.0f}s")
            try:
                self.transport.reconnect(timeout=remaining)
                if previous_boot is None or self.boot_id() != previous_boot:
                    return
            except TransportError as exc:
                log.debug("%s: waiting for the board: %s", self.name, exc)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def power_cycle(self, timeout: float = 300.0) -> None:
        """Hard power-cycle through the inventory's PDU/relay command (run on the harness host), and wait for
        the board to answer from a new boot (a command that returns before the board went down is not taken
        for a finished cycle)."""
        if not self.power_cycle_command:
            raise HarnessError(f"{self.name}: no power_cycle command in the inventory for this board")
        try:
            before: str | None = self.boot_id()
        except TransportError:  # already unreachable (why it is cycled): any answer afterwards is a new boot
            before = None
        completed = subprocess.run(shlex.split(self.power_cycle_command), capture_output=True, text=True,
                                   timeout=120, check=False)
        if completed.returncode != 0:
            raise CommandFailed(f"{self.name}: power_cycle command exited {completed.returncode}: "
                                f"{completed.stderr.strip()[-200:]}")
        self.wait_back(timeout, previous_boot=before)
