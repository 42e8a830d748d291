"""Build (once) and cache the virtual boards' images: a debootstrap rootfs, then one image per profile.

Nothing is pulled from a registry: the base is a Debian rootfs made by debootstrap from the Debian
mirror and imported into Docker; each profile's image adds the board files on top. Images are named
by a digest of their recipe, so they are rebuilt only when the recipe changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker
from docker.errors import BuildError, ImageNotFound
from rich.console import Console

from harness.errors import HarnessError
from harness.profiles import DeviceProfile
from harness.virtual.recipe import BASE_PACKAGES, DEBIAN_MIRROR, DEBIAN_SUITE, BoardContext, base_tag

console = Console(stderr=True)
DEBOOTSTRAP_TIMEOUT_S = 1800


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def _debootstrap(target: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise HarnessError("building a virtual board's base image needs debootstrap: `apt-get install debootstrap`")
    if os.geteuid() != 0:
        raise HarnessError("debootstrap must run as root to build the virtual board's base image (use sudo)")
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
               DEBIAN_SUITE, str(target), DEBIAN_MIRROR]
    with console.status(f"debootstrap {DEBIAN_SUITE} from {DEBIAN_MIRROR}") as status, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            tail = [*tail, line.rstrip()][-20:]
            status.update(f"debootstrap: {line.strip()[:100]}")
        if proc.wait(timeout=DEBOOTSTRAP_TIMEOUT_S) != 0:
            raise HarnessError("debootstrap failed:\n" + "\n".join(tail))


def ensure_base(client: docker.DockerClient) -> str:
    """The base image tag, building it with debootstrap when it is not cached."""
    tag = base_tag()
    if _exists(client, tag):
        return tag
    console.print(f"[bold]building virtual board base image {tag}[/] (debootstrap, once)")
    with tempfile.TemporaryDirectory(prefix="jetson-hil-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _debootstrap(rootfs)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        tarball = Path(tmp) / "rootfs.tar"
        with console.status("importing the rootfs into Docker"), tarfile.open(tarball, "w") as tar:
            tar.add(rootfs, arcname=".")
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=version)
    return tag


def ensure_board_image(client: docker.DockerClient, profile: DeviceProfile) -> str:
    """The profile's board image tag, built on top of the base when not cached."""
    context = BoardContext.for_profile(profile, ensure_base(client))
    tag = context.tag()
    if _exists(client, tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="jetson-hil-board-") as tmp, \
            console.status(f"building {tag}") as status:
        context.write(Path(tmp))
        try:
            for chunk in client.api.build(path=tmp, tag=tag, rm=True, forcerm=True, decode=True):
                if "stream" in chunk and chunk["stream"].strip():
                    status.update(f"{tag}: {chunk['stream'].strip()[:100]}")
                if "error" in chunk:
                    raise BuildError(chunk["error"], [])
        except BuildError as exc:
            raise HarnessError(f"building {tag} failed: {exc.msg}") from None
    console.print(f"built {tag}")
    return tag
