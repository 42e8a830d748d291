"""Docker deployment: the module as an image built on the harness host, shipped to the board's own
Docker engine without a registry, and run there as one container with a restart policy.

The board's engine is reached with the Docker SDK. For a board whose lab.yaml transport is
``kind: ssh`` (host, port, user) the default URL is ``ssh://user@host:port``; the SDK then opens
its own paramiko connection and runs ``docker system dial-stdio`` on the board, so the board needs
the docker CLI and the user access to the engine (the ``docker`` group). That connection does not
read lab.yaml's ``key`` or ``known_hosts``: it takes the key from ``~/.ssh/config`` (IdentityFile for
that host), the SSH agent or ``~/.ssh/id_*``, and it refuses hosts missing from ``~/.ssh/known_hosts``.
``use_ssh_client=True`` uses the ``ssh`` binary instead (same files, plus ProxyJump and the like).
A board with a local transport means this machine's engine (``DOCKER_HOST`` or the local socket).

Images are named by content (bundle, Dockerfile, base, requirements, CPU), so an unchanged module is
neither rebuilt nor copied; an equal container (image, options, runtime) is left running.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from io import BytesIO
from pathlib import Path
from typing import Any

import docker
import paramiko
from docker.errors import APIError, ContainerError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from rich.console import Console
from rich.status import Status

from harness.board import Board
from harness.errors import DeployError
from harness.transport.ssh import SshTransport

from .bundle import MODULE_DIR, module_bundle, requirements_text
from .handle import DeployReport, ModuleHandle, api_request_code
from .service import ServiceSpec
from .wheelhouse import PIP_BOOTSTRAP, PROBE_COMMAND, PythonTarget, parse_probe, wheelhouse

DOCKER_DIR = MODULE_DIR / "docker"
IMAGE_REPOSITORY = "jetson-hil-module"
CONTAINER = "jetson-hil-module"
STATE_DIR = "/var/lib/jetson-hil-module"
ENGINE_DIR = "/var/cache/jetson-hil-module/engines"
STATE_VOLUME = "jetson-hil-module-state"
ENGINE_VOLUME = "jetson-hil-module-engines"
LABEL_SERVICE = "jetson-hil.service"
LABEL_BUNDLE = "jetson-hil.bundle"
#: builds and image loads stream for minutes without a byte; the SDK's 60 s read timeout is too short
ENGINE_TIMEOUT_S = 900
STOP_TIMEOUT_S = 20
PLATFORMS = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}
#: the builder's own bookkeeping lines, never the reason a build failed
_BUILDER_NOISE = ("--->", "Removing intermediate container", "Successfully built", "Successfully tagged")


@dataclass(frozen=True)
class ImageRecipe:
    """Which Dockerfile of ``module/docker`` on which base; ``python`` None means: ask the base image."""

    name: str
    dockerfile: str
    base: str
    python: PythonTarget | None = None

    def with_base(self, base: str) -> ImageRecipe:
        return replace(self, base=base, python=None)

    def build_args(self) -> dict[str, str]:
        return {"BASE": self.base}


#: JetPack 5 is L4T r35 (Ubuntu 20.04, Python 3.8); JetPack 6 is L4T r36 (Ubuntu 22.04, Python 3.10); the base
#: images bring TensorRT's bindings and libcudart, which the module calls through ctypes (no cuda-python)
RECIPES = {
    "cpu": ImageRecipe("cpu", "Dockerfile.cpu", "python:3.11-slim"),
    "jetpack5": ImageRecipe("jetpack5", "Dockerfile.jetson", "nvcr.io/nvidia/l4t-tensorrt:r8.5.2-runtime",
                            PythonTarget(3, 8, "aarch64", (2, 31))),
    "jetpack6": ImageRecipe("jetpack6", "Dockerfile.jetson", "nvcr.io/nvidia/l4t-tensorrt:r10.3.0-runtime",
                            PythonTarget(3, 10, "aarch64", (2, 35))),
}
RECIPE_BY_L4T_MAJOR = {35: "jetpack5", 36: "jetpack6"}


def engine_url(board: Board) -> str | None:
    """The board's engine as the Docker SDK names it: ssh:// for an SSH board, None (local) otherwise."""
    transport = board.transport
    if isinstance(transport, SshTransport):
        return f"ssh://{transport.user}@{transport.host}:{transport.port}"
    return None


def connect(url: str | None, use_ssh_client: bool = False, timeout: int = ENGINE_TIMEOUT_S) -> docker.DockerClient:
    """A client for the engine at ``url`` (None: DOCKER_HOST or the local socket), checked with a ping."""
    where = url or os.environ.get("DOCKER_HOST") or "the local Docker socket"
    try:
        if url is None:
            client = docker.from_env(timeout=timeout)
        else:
            client = docker.DockerClient(base_url=url, use_ssh_client=use_ssh_client, timeout=timeout)
        client.ping()
    except (DockerException, paramiko.SSHException, OSError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DeployError(f"cannot reach the Docker engine at {where}: {detail}") from None
    return client


def _has_image(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def _arch(engine_info: dict) -> str:
    return engine_info.get("Architecture", "unknown")


def module_image_tag(bundle_sha: str, recipe: ImageRecipe, module_requirements: str, arch: str) -> str:
    """``jetson-hil-module:<bundle sha[:12]>-<recipe digest[:8]>``: the bundle alone would let a CPU
    image and a Jetson image of one module (or one built for another CPU) share a name."""
    dockerfile = (DOCKER_DIR / recipe.dockerfile).read_bytes()
    recipe_text = json.dumps([recipe.build_args(), module_requirements, arch]).encode()
    digest = hashlib.sha256(dockerfile + b"\0" + recipe_text).hexdigest()
    return f"{IMAGE_REPOSITORY}:{bundle_sha[:12]}-{digest[:8]}"


def _probe_python(client: docker.DockerClient, base: str, platform: str | None) -> PythonTarget:
    """Ask the base image for its Python, CPU and glibc (the wheels must match them)."""
    try:
        output = client.containers.run(base, entrypoint=["sh", "-c", PROBE_COMMAND], remove=True, platform=platform)
    except ContainerError as exc:
        raise DeployError(f"base image {base} has no usable python3: {exc.stderr or exc}") from None
    except (ImageNotFound, APIError) as exc:
        raise DeployError(f"cannot get base image {base}: {exc.explanation or exc}") from None
    return parse_probe(output.decode().strip().splitlines()[-1])


def _build_context(directory: Path, recipe: ImageRecipe, module_dir: Path, wheels: Path) -> None:
    """Dockerfile, module/ (the bundle's files) and wheels/, laid out like the repo root."""
    shutil.copyfile(DOCKER_DIR / recipe.dockerfile, directory / "Dockerfile")
    bundle = module_bundle(module_dir)
    for path in bundle.files:
        target = directory / "module" / path.relative_to(bundle.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (directory / "wheels").mkdir()
    for wheel in wheels.glob("*.whl"):
        try:
            os.link(wheel, directory / "wheels" / wheel.name)
        except OSError:
            shutil.copyfile(wheel, directory / "wheels" / wheel.name)


def build_module_image(
    client: docker.DockerClient,
    recipe: ImageRecipe,
    tag: str,
    module_dir: Path = MODULE_DIR,
    platform: str | None = None,
    console: Console | None = None,
) -> None:
    """Build the module image on ``client``'s engine, installing the requirements from a wheelhouse.

    The wheels are downloaded on this host for the image's Python, so the build needs no index and
    no route from the engine to PyPI.
    """
    console = console or Console(stderr=True)
    target = recipe.python or _probe_python(client, recipe.base, platform)
    # a newer pip rides along: JetPack 5's image has Ubuntu 20.04's pip 20.0.2, which cannot install manylinux_2_x
    wheels = wheelhouse(f"{requirements_text(module_dir)}\n{PIP_BOOTSTRAP}\n", target, console)
    console.print(f"[bold]docker[/]: building {tag} from {recipe.base} ({recipe.dockerfile}, {target.tag})")
    started = time.monotonic()
    last = "no output"
    with tempfile.TemporaryDirectory(prefix="jetson-hil-image-") as tmp, console.status(f"building {tag}") as status:
        _build_context(Path(tmp), recipe, module_dir, wheels)
        try:
            stream = client.api.build(
                path=tmp, tag=tag, buildargs=recipe.build_args(), platform=platform, rm=True, forcerm=True,
                decode=True,
            )  # fmt: skip
            for chunk in stream:
                if "error" in chunk:
                    raise DeployError(f"building {tag} failed: {chunk['error'].strip()} (last build line: {last})")
                line = chunk.get("stream", "").strip()
                if line.startswith("Step "):
                    console.print(f"  {line[:120]}", highlight=False, markup=False)
                elif line and not line.startswith(_BUILDER_NOISE):
                    last = line.splitlines()[-1][:200]
                    status.update(f"{tag}: {last[:100]}")
        except APIError as exc:
            raise DeployError(f"building {tag} failed: {exc.explanation or exc} (last build line: {last})") from None
    console.print(f"[bold]docker[/]: built {tag} in {time.monotonic() - started:.0f} s")


def _counted(chunks: Iterator[bytes], total: int, status: Status, what: str) -> Iterator[bytes]:
    done = 0
    for chunk in chunks:
        done += len(chunk)
        status.update(f"{what}: {done / 1e6:.0f} of ~{total / 1e6:.0f} MB")
        yield chunk


def transfer_image(source: docker.DockerClient, target: docker.DockerClient, tag: str,
                   console: Console | None = None) -> None:
    """Stream ``tag`` from one engine to another (``docker save | docker load``): no registry, no temp file."""
    console = console or Console(stderr=True)
    image = source.images.get(tag)
    size = int(image.attrs.get("Size", 0))
    console.print(f"[bold]docker[/]: copying {tag} (~{size / 1e6:.0f} MB) to the board's engine")
    started = time.monotonic()
    with console.status(f"saving and loading {tag}") as status:
        try:
            loaded = target.images.load(_counted(image.save(named=True), size, status, f"saving and loading {tag}"))
        except (DockerException, OSError) as exc:
            raise DeployError(f"copying {tag} to the board's engine failed: {exc}") from None
    if tag not in {t for img in loaded for t in img.tags}:
        raise DeployError(f"the board's engine loaded {[t for img in loaded for t in img.tags]} but not {tag}")
    console.print(f"[bold]docker[/]: {tag} loaded in {time.monotonic() - started:.0f} s")


class DockerModuleHandle(ModuleHandle):
    """The module in its container. The API goes through the board transport as for a native deploy
    (the container shares the board's network); one-shot runs use ``docker exec`` on the board, so
    ``run_module`` needs the docker CLI there (the ssh:// engine URL needs it anyway)."""

    def __init__(self, board: Board, container: Container, api_port: int, report: DeployReport,
                 stopper: Callable[[], None] | None = None):
        """`stopper`: how the session ends the module (default: stop and remove the container)."""
        super().__init__(board, STATE_DIR, api_port, report, stopper or self._remove)
        self.container = container
        self.container.reload()
        self._restarts = self.container.attrs.get("RestartCount", 0)  # restarts from here on mean a crash loop

    def python_command(self, args: list[str]) -> str:
        return shlex.join(["docker", "exec", self.container.name, "python3", "-m", "module", *args])

    def put_tree(self, local: Path, remote_name: str) -> str:
        """Copy a local folder into the container as STATE_DIR/data/REMOTE_NAME and return that path."""
        buffer = BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(str(local), arcname=remote_name)
        target = f"{STATE_DIR}/data"
        self._exec(["sh", "-c", f"mkdir -p {target} && rm -rf {shlex.quote(f'{target}/{remote_name}')}"])
        if not self.container.put_archive(target, buffer.getvalue()):
            raise DeployError(f"{self.board.name}: copying {local} into {self.container.name} failed")
        return f"{target}/{remote_name}"

    def _exec(self, argv: list[str]) -> None:
        code, output = self.container.exec_run(argv)
        if code != 0:
            raise DeployError(f"{self.board.name}: `{shlex.join(argv)}` in {self.container.name} exited {code}: "
                              f"{output.decode(errors='replace').strip()[-200:]}")

    def logs(self, lines: int = 200) -> str:
        return self.container.logs(tail=int(lines)).decode(errors="replace")

    def api_call_on_board(self, path: str, method: str = "GET", timeout: float = 5) -> str:
        code = api_request_code(self.api_port, path, method, timeout)
        return f"docker exec {shlex.quote(self.container.name)} python3 -c {shlex.quote(code)}"

    def _probe_health(self) -> dict | str | None:
        """One look from inside the container; a module that exited or restarted since the deploy is gone
        for good (the restart policy would restart it forever)."""
        self.container.reload()
        state = self.container.attrs["State"]
        if state["Status"] in ("exited", "dead") or self.container.attrs.get("RestartCount", 0) > self._restarts:
            return f"the module exited (exit code {state.get('ExitCode')})"
        probe = api_request_code(self.api_port, "/health", timeout=2)
        try:
            code, output = self.container.exec_run(["python3", "-c", probe])
        except APIError:  # restarting between reload() and exec
            return None
        return json.loads(output) if code == 0 and output.strip() else None

    def _remove(self) -> None:
        """Stop and remove the container; its image and volumes (state, engines) stay for the next deploy."""
        try:
            self.container.stop(timeout=STOP_TIMEOUT_S)
            self.container.remove()
        except NotFound:
            pass


class DockerDeployer:
    """Deploys the module image to one board's Docker engine and returns a handle to the container.

    ``nvidia_runtime`` None means: the board's profile is a Jetson (tegra SoC), which needs
    ``--runtime nvidia`` for the GPU; pass False for an engine without that runtime (CPU image).
    ``recipe`` None picks the Jetson image for the board's L4T release, or the CPU image without the
    nvidia runtime. Images are built on ``build_url``'s engine (None: this machine's).
    """

    def __init__(
        self,
        board: Board,
        docker_url: str | None = None,
        *,
        use_ssh_client: bool = False,
        nvidia_runtime: bool | None = None,
        recipe: ImageRecipe | None = None,
        build_url: str | None = None,
        module_dir: Path = MODULE_DIR,
        console: Console | None = None,
    ) -> None:
        self.board = board
        self.docker_url = docker_url if docker_url is not None else engine_url(board)
        self.use_ssh_client = use_ssh_client
        self.nvidia_runtime = board.profile.soc.startswith("tegra") if nvidia_runtime is None else nvidia_runtime
        self.recipe = recipe
        self.build_url = build_url
        self.module_dir = module_dir
        self.console = console or Console(stderr=True)

    @cached_property
    def engine(self) -> docker.DockerClient:
        """The board's engine."""
        return connect(self.docker_url, self.use_ssh_client)

    @cached_property
    def builder(self) -> docker.DockerClient:
        """The engine that builds images (this machine's unless ``build_url`` says otherwise)."""
        return connect(self.build_url)

    def _say(self, text: str) -> None:
        self.console.print(f"[bold]{self.board.name}[/]: {text}")

    @cached_property
    def _engine_info(self) -> dict:
        """The board engine's runtimes and CPU: read once, they do not change under a deploy."""
        return self.engine.info()

    def _check_runtime(self) -> None:
        runtimes = sorted(self._engine_info.get("Runtimes", {}))
        if self.nvidia_runtime and "nvidia" not in runtimes:
            raise DeployError(
                f"{self.board.name}: the Docker engine has no 'nvidia' runtime (it has {', '.join(runtimes)}): "
                "install nvidia-container-toolkit on the board, or deploy the CPU image with nvidia_runtime=False"
            )

    def _pick_recipe(self) -> ImageRecipe:
        if self.recipe is not None:
            return self.recipe
        if not self.nvidia_runtime:
            return RECIPES["cpu"]
        l4t = self.board.identity().l4t
        name = RECIPE_BY_L4T_MAJOR.get(l4t.major) if l4t else None
        if name is None:
            raise DeployError(
                f"{self.board.name}: no Jetson image recipe for L4T {l4t or 'unknown'}: the module image needs "
                "JetPack 5 (r35) or 6 (r36); pass recipe= to choose one"
            )
        return RECIPES[name]

    def _platform(self, arch: str) -> str | None:
        """A --platform for the build only when the build engine's CPU differs from the board's."""
        if arch == _arch(self.builder.info()):
            return None
        if arch not in PLATFORMS:
            raise DeployError(f"{self.board.name}: cannot build images for a {arch} engine")
        return PLATFORMS[arch]

    def _container(self) -> Container | None:
        try:
            return self.engine.containers.get(CONTAINER)
        except NotFound:
            return None

    def _current(self, container: Container | None, image_id: str, service_sha: str) -> bool:
        """Whether the running container already is this image with these options and runtime."""
        if container is None or container.status != "running":
            return False
        runtime = container.attrs["HostConfig"].get("Runtime") or "runc"
        return (
            container.image.id == image_id
            and container.labels.get(LABEL_SERVICE) == service_sha
            and (runtime == "nvidia") == self.nvidia_runtime
        )

    def _start(self, tag: str, service: ServiceSpec, service_sha: str, bundle_sha: str) -> Container:
        self._say(f"starting {CONTAINER} from {tag}" + (" (runtime nvidia)" if self.nvidia_runtime else ""))
        try:
            return self.engine.containers.run(
                tag,
                # drop "<venv python> -m module": the image's ENTRYPOINT is "python3 -m module"
                command=service.argv(STATE_DIR)[3:],
                name=CONTAINER,
                detach=True,
                restart_policy={"Name": "unless-stopped"},
                runtime="nvidia" if self.nvidia_runtime else None,
                network_mode="host",
                volumes={STATE_VOLUME: {"bind": STATE_DIR, "mode": "rw"},
                         ENGINE_VOLUME: {"bind": ENGINE_DIR, "mode": "rw"}},
                environment={"JETSON_HIL_API_PORT": str(service.api_port), "JETSON_HIL_ENGINE_CACHE": ENGINE_DIR},
                labels={LABEL_SERVICE: service_sha, LABEL_BUNDLE: bundle_sha},
            )  # fmt: skip
        except APIError as exc:
            raise DeployError(f"{self.board.name}: starting the module container failed: {exc.explanation}") from None

    def image_tag(self, bundle_sha: str) -> str:
        """The module image's tag for this board (its recipe and CPU): named by content."""
        return module_image_tag(bundle_sha, self._pick_recipe(), requirements_text(self.module_dir),
                                _arch(self._engine_info))

    def build_image(self, tag: str) -> bool:
        """The image on the builder's engine, built unless it is there; whether it was built."""
        if _has_image(self.builder, tag):
            return False
        build_module_image(self.builder, self._pick_recipe(), tag, self.module_dir,
                           self._platform(_arch(self._engine_info)), self.console)
        return True

    def deploy(self, service: ServiceSpec | None = None) -> DockerModuleHandle:
        service = (service or ServiceSpec()).on(self.board.backend)
        started = time.monotonic()
        self._check_runtime()
        bundle = module_bundle(self.module_dir)
        tag = self.image_tag(bundle.sha256)
        built = loaded = False
        if not _has_image(self.engine, tag):
            built = self.build_image(tag)
            if not _has_image(self.engine, tag):  # else the builder is the board's engine
                transfer_image(self.builder, self.engine, tag, self.console)
                loaded = True
        image_id = self.engine.images.get(tag).id
        service_sha = service.sha(STATE_DIR)
        container = self._container()
        restart = not self._current(container, image_id, service_sha)
        if restart:
            if container is not None:
                self._say(f"replacing {CONTAINER} ({container.status})")
                container.stop(timeout=STOP_TIMEOUT_S)
                container.remove()
            container = self._start(tag, service, service_sha, bundle.sha256)
        assert container is not None
        report = DeployReport(loaded, built, restart, round(time.monotonic() - started, 2), "docker")
        handle = DockerModuleHandle(self.board, container, service.api_port, report)
        return handle.await_ready(self._say, started, "unchanged, nothing built or copied")


def deploy_docker(board: Board, service: ServiceSpec | None = None, **options: Any) -> DockerModuleHandle:
    """Deploy the repo's module as a container on ``board``'s Docker engine and return its handle."""
    return DockerDeployer(board, **options).deploy(service)
