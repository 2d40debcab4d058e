"""The ``deploy`` section of the configuration file: what ``crackseg-monitor deploy`` and
``rollback`` drive (the target that runs versions, its hosts, the router, the rollout's
options). Part of :mod:`.config`, which re-exports every name."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, create_model, field_validator

from crackseg.utils.deployment.durations import Duration
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.models import DeploymentStrategy
from crackseg.utils.deployment.monitoring.spec import DEPLOYMENT_ID_PATTERN
from crackseg.utils.deployment.processes import check_host
from crackseg.utils.deployment.service.config_parse import FileSection, valid_or_none
from crackseg.utils.deployment.service.config_router import RouterConfig

__all__ = [
    "DeployConfig",
    "HostConfig",
    "PositiveDuration",
    "RolloutOptions",
    "RouterConfig",
    "TargetConfig",
    "deploy_problems",
    "rollout_problems",
]

PositiveDuration = typing.Annotated[Duration, Field(gt=0)]
_ID = DEPLOYMENT_ID_PATTERN


class TargetConfig(FileSection):
    """Where versions run: local processes (:class:`~..rollout.targets.process.ProcessTarget`).

    ``command`` (a list, or a string split like a shell) may use ``{port}``, ``{host}``,
    ``{version}`` and ``{environment}``; ``version_args`` adds arguments for given versions.
    """

    type: Literal["process"] = "process"
    command: list[str] = Field(min_length=1)
    health_path: str = "/health"
    host: str = "127.0.0.1"
    env: dict[str, str] = {}
    cwd: str | None = None
    log_dir: str | None = None
    grace_period: PositiveDuration = 10.0
    version_args: dict[str, list[str]] = {}

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        import shlex

        return shlex.split(v) if isinstance(v, str) else v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        # The router's backend address: refused on load, not when traffic moves to it.
        try:
            return check_host("host", v)
        except ConfigError as exc:
            raise ValueError(exc.problem) from None


class HostConfig(FileSection):
    """One host of ``deploy.hosts``: versions start there over SSH (see
    :class:`~crackseg.utils.deployment.rollout.targets.ssh.SSHTarget`).

    ``key_path`` is the private key, ``known_hosts`` the file its host key must already be
    in (an unknown key is refused, never accepted), ``address`` where nginx and the
    monitor reach its services (default: ``host``). ``env`` values are secrets (use
    ``${VAR}``): masked in every dump.
    """

    host: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:\[\]-]+$")
    user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    port: int = Field(default=22, ge=1, le=65535)
    key_path: str | None = None
    known_hosts: str | None = None
    address: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:\[\]-]+$")
    env: dict[str, SecretStr] = {}

    def ssh_host(self) -> Any:
        """The :class:`~crackseg.utils.deployment.rollout.targets.ssh.SSHHost` (ConfigError
        if its key file is missing)."""
        from crackseg.utils.deployment.rollout.targets.ssh import SSHHost

        extra = {"user": self.user} if self.user else {}
        return SSHHost(
            self.host, port=self.port, key_path=self.key_path, known_hosts=self.known_hosts,
            address=self.address, env={k: v.get_secret_value() for k, v in self.env.items()},
            **extra,
        )  # fmt: skip


def _rollout_options() -> type[BaseModel]:
    """The model of ``deploy.rollout``: every option of the orchestrator's
    :class:`~crackseg.utils.deployment.rollout.config.DeploymentConfig` but the four the
    ``deploy`` section fixes, typed as it types them (durations as everywhere in the file),
    defaults left to it. Its own checks of values and pairs of values run on load too."""
    from crackseg.utils.deployment.rollout.config import DeploymentConfig as Rollout

    hints = typing.get_type_hints(Rollout)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(Rollout):
        if f.name in _ROLLOUT_FIXED:
            continue
        tp = hints[f.name]
        if f.name.endswith(_DURATION_SUFFIXES) and float in (*typing.get_args(tp), tp):
            tp = Duration | None if type(None) in typing.get_args(tp) else Duration
        elif tp in (int, str, bool):
            tp = typing.Annotated[tp, Field(strict=True)]
        # Unset keeps the orchestrator's default: say which, for the schema and its reference.
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = "none" if default is dataclasses.MISSING else json.dumps(default, default=str)
        fields[f.name] = (tp, Field(None, description=f"unset: the orchestrator's {shown}"))
    return create_model("RolloutOptions", __config__=FileSection.model_config, **fields)


_ROLLOUT_FIXED = ("artifact_id", "target_environment", "version", "deployment_id")
_DURATION_SUFFIXES = ("_seconds", "_timeout", "_interval", "grace_period")
if typing.TYPE_CHECKING:
    RolloutOptions = BaseModel
else:
    RolloutOptions = _rollout_options()


class DeployConfig(FileSection):
    """The ``deploy`` section: what ``crackseg-monitor deploy`` and ``rollback`` drive.

    ``rollout`` holds the options of :class:`~crackseg.utils.deployment.rollout.config.DeploymentConfig`
    (``canary_steps``, ``bake_seconds``, ``max_error_rate_percent``, ``replicas`` ...),
    checked on load.
    """

    name: str = Field(default="service", pattern=_ID)
    environment: str = Field(default="production", pattern=_ID)
    strategy: DeploymentStrategy = DeploymentStrategy.BLUE_GREEN
    version: str | None = None
    stable_version: str | None = None
    target: TargetConfig
    #: Run versions on these hosts over SSH; empty: locally. ``target.log_dir`` is then a
    #: folder on the hosts and ``target.host`` is unused (each host's ``address`` is).
    hosts: list[HostConfig] = []
    router: RouterConfig = RouterConfig()
    rollout: RolloutOptions = Field(default_factory=lambda: RolloutOptions())

    @field_validator("version", "stable_version")
    @classmethod
    def _deployable(cls, v: str | None) -> str | None:
        from crackseg.utils.deployment.rollout.config import check_version

        return v if v is None else check_version(v)

    def deployment_config(self, version: str, deployment_id: str | None = None) -> Any:
        """The orchestrator's ``DeploymentConfig`` for ``version`` (ConfigError if invalid)."""
        from crackseg.utils.deployment.rollout.config import DeploymentConfig as Rollout

        options = self.rollout.model_dump(exclude_unset=True)
        options.setdefault("health_check_path", self.target.health_path)
        return Rollout(
            artifact_id=self.name,
            target_environment=self.environment,
            version=version,
            deployment_id=deployment_id,
            **options,
        )


def rollout_problems(raw: Any, health_path: str = "/health") -> list[tuple[str, str]]:
    """What the orchestrator's checks of ``deploy.rollout`` options together find (the
    ``DeploymentConfig`` they make, its health path ``health_path`` unless they set one),
    as ``(key, message)``, over the keys whose type is right: a key of the wrong type is
    the model's problem, reported beside these, so every problem comes in one answer."""
    rollout = valid_or_none(RolloutOptions, _typed_keys(RolloutOptions, raw))
    if rollout is None:
        return []
    target = TargetConfig.model_construct(health_path=health_path)
    try:
        DeployConfig.model_construct(rollout=rollout, target=target).deployment_config("v1")
    except ConfigError as exc:
        return exc.problems
    return []


def deploy_problems(raw: Any) -> list[tuple[str, str]]:
    """What the ``deploy`` section's own checks find beyond its keys' types, as ``(key path,
    message)``: the rollout's options together (:func:`rollout_problems`) and each host's.
    Each part is checked when it is well-formed even if another part is not: a file's
    problems all come in one run."""
    if not isinstance(raw, dict):
        return []
    target = valid_or_none(TargetConfig, raw.get("target"))
    health_path = target.health_path if target is not None else "/health"
    problems = []
    for field, what in rollout_problems(raw.get("rollout", {}), health_path):
        from_target = field == "health_check_path" and "health_check_path" not in (
            raw.get("rollout") or {}
        )
        problems.append(
            (f"deploy.{'target.health_path' if from_target else 'rollout.' + field}", what)
        )
    hosts = raw.get("hosts")
    for i, item in enumerate(hosts if isinstance(hosts, list) else []):
        if (host := valid_or_none(HostConfig, item)) is not None:
            try:
                host.ssh_host()
            except ConfigError as exc:
                problems += [
                    (f"deploy.hosts[{i}].{field.rsplit('.', 1)[-1]}", what)
                    for field, what in exc.problems
                ]
    return problems


def _typed_keys(model: type[BaseModel], raw: Any) -> Any:
    """``raw`` without the keys whose values ``model`` refuses."""
    if not isinstance(raw, dict):
        return raw
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        refused = {err["loc"][0] for err in exc.errors() if err["loc"]}
        return {k: v for k, v in raw.items() if k not in refused}
    return raw
