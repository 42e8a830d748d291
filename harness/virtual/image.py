"""Build (once) and cache the virtual boards' images: a debootstrap rootfs, then one image per profile.

Nothing is pulled from a registry: the base is a Debian rootfs made by debootstrap from the Debian
mirror and imported into Docker; each profile's image adds the board files on top. Images are named
by a digest of their recipe, so they are rebuilt only when the recipe changes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import docker
from docker.errors import BuildError, DockerException, ImageNotFound
from requests.exceptions import RequestException
from rich.console import Console

from harness.deploy.wheelhouse import wheelhouse
from harness.errors import HarnessError
from harness.profiles import DeviceProfile
from harness.virtual.recipe import (
    ARCHES,
    BASE_PACKAGES,
    DEBIAN_MIRROR,
    JETSON_STATS,
    BoardContext,
    base_python,
    base_tag,
    debian_suite,
    host_arch,
)

console = Console(stderr=True)
#: a Debian minbase over a slow mirror takes minutes; a stalled download must not take forever
DEBOOTSTRAP_TIMEOUT_S = 1800
#: the board image adds a few files and links on top of the base: seconds, not minutes (a minute under qemu)
BOARD_BUILD_TIMEOUT_S = 600
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def emulation_ready(arch: str, binfmt: Path = BINFMT) -> None:
    """A foreign architecture runs here only through qemu-user registered with binfmt_misc (with the F flag, so
    that containers find the interpreter); say how to get it otherwise."""
    if arch == host_arch():
        return
    entry = binfmt / f"qemu-{ARCHES.get(arch, arch)}"
    text = entry.read_text() if entry.is_file() else ""
    if not text.startswith("enabled") or "F" not in next((line for line in text.splitlines()
                                                          if line.startswith("flags:")), ""):
        raise HarnessError(f"an {arch} virtual board runs under qemu-user, which this machine has not registered "
                           f"({entry}: {'not enabled with the F flag' if text else 'missing'}): run "
                           "scripts/setup.sh, which installs qemu-user-static and registers it for the whole machine")


def _debootstrap(target: Path, suite: str, arch: str, timeout_s: float = DEBOOTSTRAP_TIMEOUT_S) -> None:
    if shutil.which("debootstrap") is None:
        raise HarnessError("building a virtual board's base image needs debootstrap: `apt-get install debootstrap`")
    if os.geteuid() != 0:
        raise HarnessError("debootstrap must run as root to build the virtual board's base image (use sudo)")
    command = ["debootstrap", f"--arch={arch}", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
               suite, str(target), DEBIAN_MIRROR]
    run_with_progress(command, f"debootstrap {suite} {arch} from {DEBIAN_MIRROR}", timeout_s)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def run_with_progress(command: list[str], what: str, timeout_s: float) -> None:
    """Run `command`, its latest output line as progress; killed at the deadline (a stalled download blocks
    the read forever otherwise), and a failure or the deadline raised with its last lines."""
    with console.status(what) as status, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True) as proc:
        assert proc.stdout is not None
        # the whole process group: a child (wget, dpkg) would otherwise keep the pipe open past the deadline
        watchdog = threading.Timer(timeout_s, _kill_group, (proc.pid,))
        watchdog.start()
        tail: list[str] = []
        try:
            for line in proc.stdout:
                tail = [*tail, line.rstrip()][-20:]
                status.update(f"{what}: {line.strip()[:100]}")
            code = proc.wait()
        finally:
            watchdog.cancel()
    if code != 0:
        why = f"did not finish within {timeout_s:g} s" if code == -signal.SIGKILL else f"failed (exit {code})"
        raise HarnessError(f"{what} {why}; last lines:\n" + "\n".join(tail))


def ensure_base(client: docker.DockerClient, suite: str = "bookworm", arch: str | None = None) -> str:
    """The base image tag of Debian `suite` for `arch` (this machine's by default), building it with debootstrap
    when it is not cached."""
    arch = arch or host_arch()
    emulation_ready(arch)  # a cached image of another architecture runs no more than a new one without qemu
    tag = base_tag(suite, arch)
    if _exists(client, tag):
        return tag
    console.print(f"[bold]building virtual board base image {tag}[/] (debootstrap, once)")
    with tempfile.TemporaryDirectory(prefix="jetson-hil-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _debootstrap(rootfs, suite, arch)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        tarball = Path(tmp) / "rootfs.tar"
        with console.status("importing the rootfs into Docker"), tarfile.open(tarball, "w") as tar:
            tar.add(rootfs, arcname=".")
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=version)
    return tag


def ensure_board_image(client: docker.DockerClient, profile: DeviceProfile, arch: str | None = None,
                       timeout_s: float = BOARD_BUILD_TIMEOUT_S) -> str:
    """The profile's board image tag for `arch`, built on top of its Debian base when not cached."""
    arch = arch or host_arch()
    suite = debian_suite(profile)
    wheels = wheelhouse(JETSON_STATS + "\n", base_python(suite, arch), console,
                        what="jetson-stats (the board's jtop service)")
    context = BoardContext.for_profile(profile, ensure_base(client, suite, arch), wheels, arch)
    tag = context.tag()
    if _exists(client, tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="jetson-hil-board-") as tmp, \
            console.status(f"building {tag}") as status:
        context.write(Path(tmp))
        deadline = time.monotonic() + timeout_s
        try:
            # the HTTP timeout bounds a silent engine; the deadline a build that keeps talking
            for chunk in client.api.build(path=tmp, tag=tag, rm=True, forcerm=True, decode=True, timeout=timeout_s):
                if "stream" in chunk and chunk["stream"].strip():
                    status.update(f"{tag}: {chunk['stream'].strip()[:100]}")
                if "error" in chunk:
                    raise BuildError(chunk["error"], [])
                if time.monotonic() > deadline:
                    raise HarnessError(f"building {tag} did not finish within {timeout_s:.0f} s")
        except BuildError as exc:
            raise HarnessError(f"building {tag} failed: {exc.msg}") from None
        except (RequestException, DockerException) as exc:
            raise HarnessError(f"building {tag}: the Docker engine stopped answering ({exc})") from None
    console.print(f"built {tag}")
    return tag
