"""The lab inventory (lab.yaml): which boards exist, how to reach them, how to power-cycle them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError, UnknownDeviceError
from harness.lease import FileLeaseStore, LeaseStore, default_lease_dir
from harness.profiles import DeviceProfile, ThroughputFloor
from harness.yamlfile import read_yaml, validation_error

TAG_PREFIX = "tag:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshTransportConfig(_Strict):
    kind: Literal["ssh"]
    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    key: Path | None = None
    known_hosts: Path | None = None
    trust_on_first_use: bool = False
    connect_timeout: float = Field(default=10.0, gt=0)

    @field_validator("key", "known_hosts")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class LocalTransportConfig(_Strict):
    kind: Literal["local"]


TransportConfig = Annotated[SshTransportConfig | LocalTransportConfig, Field(discriminator="kind")]


class UplinkConfig(_Strict):
    """The MQTT broker a board's module publishes to, as the board names it (and, by default, as this host does)."""

    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    #: `{board}` is replaced by the board's name
    topic: str = Field(default="jetson-hil/{board}/detections", min_length=1)

    def topic_for(self, board: str) -> str:
        return self.topic.replace("{board}", board)


#: the NAME of an environment variable that holds a secret: lab.yaml never holds the secret itself
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]


def _from_env(environ: Mapping[str, str], *names: str, what: str) -> list[str]:
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise ConfigError("environment", ", ".join(missing), f"set it to {what} (lab.yaml names the variable)")
    return [environ[name] for name in names]


class RegistryConfig(_Strict):
    """A container registry IoT Edge pulls the module from; its credentials are environment variable names."""

    address: str = Field(min_length=1)
    username_env: EnvName
    password_env: EnvName

    def credentials(self, environ: Mapping[str, str]) -> dict[str, str]:
        user, password = _from_env(environ, self.username_env, self.password_env,
                                   what=f"the credentials of {self.address}")
        return {"address": self.address, "username": user, "password": password}


class IotHubConfig(_Strict):
    """The board as an IoT Edge device of an IoT Hub, for `--deploy iothub`."""

    #: the board's device id on the hub (IoT Hub's own rule for ids)
    device_id: str = Field(pattern=r"^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$")
    #: the environment variable holding the hub's service connection string (never the string itself)
    connection_string_env: EnvName
    registry: RegistryConfig | None = None
    #: what runs modules on the device (harness.deploy.iothub.edge_runtime): docker is IoT Edge itself, others are
    #: registered by packages (the virtual lab's virtual-edge)
    runtime: str = "docker"
    #: the certificate(s) to trust for the hub instead of the system's (a private endpoint)
    ca_file: Path | None = None
    #: how long edgeAgent has to pull and start the module and report it running
    timeout_s: float = Field(default=600.0, gt=0)

    def connection_string(self, environ: Mapping[str, str]) -> str:
        return _from_env(environ, self.connection_string_env, what="the IoT Hub's service connection string")[0]


class BoardEntry(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    profile: str
    tags: list[str] = []
    transport: TransportConfig
    power_cycle: str | None = Field(default=None, description="shell command run on the harness host")
    uplink: UplinkConfig | None = None
    #: how the suites deploy the module to this board (harness.deploy.methods); `--deploy` overrides it
    deploy: str | None = None
    iothub: IotHubConfig | None = None
    #: the module's backend here unless `--backend` says otherwise: auto (TensorRT, refused where the board lacks
    #: it), tensorrt, or onnxruntime (the CPU, chosen explicitly); harness.deploy.readiness.BACKENDS
    backend: Literal["auto", "tensorrt", "onnxruntime"] = "auto"

    @field_validator("deploy")
    @classmethod
    def _known_method(cls, value: str | None) -> str | None:
        from harness.deploy.methods import DEPLOYERS  # the deployers import the board layer, not the inventory

        if value is not None and value not in DEPLOYERS:
            raise ValueError(f"unknown deploy method {value!r}; choose from {', '.join(DEPLOYERS)}")
        return value


class Lab(_Strict):
    lease_dir: Path | None = None
    #: a PostgreSQL URL (postgresql://user@host/db; the password from PGPASSWORD or ~/.pgpass, never here): leases,
    #: quarantine and board records shared by every controller of the lab; default: files in `lease_dir`
    lease_store: str | None = Field(default=None, pattern=r"^postgresql(\+\w+)?://")
    #: a quarantined board is health-checked again after this long (None: only `hil devices --release` frees it)
    quarantine_recheck_s: float | None = Field(default=6 * 3600.0, gt=0)
    #: sessions in a row that failed for infrastructure reasons (unreachable, unhealthy, lost) before quarantine
    quarantine_after: int = Field(default=3, ge=1)
    uplink: UplinkConfig | None = None
    boards: list[BoardEntry] = []
    #: the lab's own floors, per board name or profile name: what this farm measured (`hil floors suggest`), applied
    #: like a profile's `throughput_floors`
    floors: dict[str, list[ThroughputFloor]] = {}
    source: str = Field(default="<memory>", exclude=True)

    def floors_for(self, entry: BoardEntry) -> list[ThroughputFloor]:
        """The lab's floors of one board: those set for its name, then those set for its profile."""
        return [*self.floors.get(entry.name, []), *self.floors.get(entry.profile, [])]

    def lease_folder(self) -> Path:
        """Where this lab's leases live: `lease_dir:` when given, else the default."""
        return self.lease_dir.expanduser() if self.lease_dir else default_lease_dir()

    def leases(self) -> LeaseStore:
        """The lab's lease store: PostgreSQL when `lease_store:` names one, else files in `lease_folder()`."""
        if self.lease_store:
            from harness.lease.postgres import PostgresLeaseStore  # psycopg only where a lab uses it

            return PostgresLeaseStore(self.lease_store)
        return FileLeaseStore(self.lease_folder())

    def uplink_for(self, entry: BoardEntry) -> UplinkConfig | None:
        """The board's own uplink, else the lab's; None: the harness brings a broker for the session."""
        return entry.uplink or self.uplink

    def select(self, selector: str, profiles: dict[str, DeviceProfile]) -> list[BoardEntry]:
        """Boards matching a board name, a profile name, or `tag:X` (in inventory order)."""
        if selector.startswith(TAG_PREFIX):
            tag = selector[len(TAG_PREFIX):]
            found = [b for b in self.boards if tag in b.tags]
        else:
            found = [b for b in self.boards if b.name == selector] or [
                b for b in self.boards if b.profile == selector]
        if not found:
            raise UnknownDeviceError(self._unknown_message(selector, profiles))
        return found

    def _unknown_message(self, selector: str, profiles: dict[str, DeviceProfile]) -> str:
        tags = sorted({t for b in self.boards for t in b.tags})
        names = ", ".join(b.name for b in self.boards) or "none"
        hint = ""
        if selector in profiles:
            hint = f" (profile {selector!r} exists but no board of it is in the inventory)"
        return (f"no board matches --device {selector!r}{hint} in {self.source}; "
                f"boards: {names}; profiles: {', '.join(profiles)}; tags: {', '.join(tags) or 'none'}")


def load_lab(path: Path, profiles: dict[str, DeviceProfile]) -> Lab:
    """Read and validate lab.yaml; every board must name a known profile, names must be unique."""
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"expected a mapping with a 'boards' list, got {type(data).__name__}")
    try:
        lab = Lab.model_validate({**data, "source": str(path)})
    except ValidationError as exc:
        raise validation_error(path, exc) from None
    seen: set[str] = set()
    for index, board in enumerate(lab.boards):
        if board.profile not in profiles:
            raise ConfigError(path, f"boards.{index}.profile",
                              f"unknown profile {board.profile!r}; known: {', '.join(profiles)}")
        if board.name in seen:
            raise ConfigError(path, f"boards.{index}.name", f"duplicate board name {board.name!r}")
        seen.add(board.name)
    for owner, floors in lab.floors.items():
        profile = profiles.get(owner) or next((profiles[b.profile] for b in lab.boards if b.name == owner), None)
        if profile is None:
            raise ConfigError(path, f"floors.{owner}", "not a board of this lab nor a profile; floors are set per "
                                                       f"board name or profile name (profiles: {', '.join(profiles)})")
        for index, floor in enumerate(floors):
            try:
                profile.mode(floor.power_mode)
            except ConfigError as exc:
                raise ConfigError(path, f"floors.{owner}.{index}.power_mode", exc.problem) from None
    return lab
