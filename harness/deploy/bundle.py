"""The module bundle: the files of ``module/`` a board needs, identified by one content hash.

Deployment compares this hash with the one stored on the board and copies nothing when they
match, so a second deploy of an unchanged module costs one SSH round trip.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import module
from harness.errors import ConfigError
from module.model import file_sha256

MODULE_DIR = Path(module.__file__).resolve().parent
#: board-side files only: training needs torch, docker files are for image builds
EXCLUDED_PARTS = {"training", "docker", "__pycache__"}


@dataclass(frozen=True)
class Bundle:
    """The file list and its hash; ``tarball()`` packs them under ``module/``."""

    root: Path
    files: tuple[Path, ...]
    sha256: str

    def tarball(self) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
            for path in self.files:
                info = tar.gettarinfo(str(path), arcname=f"module/{path.relative_to(self.root).as_posix()}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
        return buffer.getvalue()


def module_bundle(root: Path = MODULE_DIR) -> Bundle:
    """Collect the module's board-side files (sources, supervisor, model, labels, requirements)."""
    if not (root / "__main__.py").is_file():
        raise ConfigError(str(root), "module", "not a module directory (no __main__.py); pass the repo's module/")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not EXCLUDED_PARTS.intersection(p.relative_to(root).parts) and p.suffix != ".pyc"
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode())
    return Bundle(root=root, files=tuple(files), sha256=digest.hexdigest())


def requirements_text(root: Path = MODULE_DIR) -> str:
    return (root / "requirements.txt").read_text()
