"""The service's YAML configuration: pydantic models, ``${VAR}`` substitution, clear errors.

:func:`load_config` reads a file, substitutes ``${VAR}`` / ``${VAR:-default}`` from the
environment in every string value (``$$`` is a literal ``$``), validates the result and
returns a :class:`MonitorConfig`. Every problem becomes one line naming the key path and
what is expected (``deployments[2].check_interval: must be > 0``), all gathered in one
:class:`ConfigFileError`; nothing is started from a file with a problem.

Secrets (the server token, handler passwords, tokens and webhook URLs) never appear in
``repr`` or in :meth:`MonitorConfig.redacted`.

>>> cfg = parse_config({"deployments": [{"id": "api", "url": "http://127.0.0.1:8080/health"}]})
>>> cfg.deployments[0].check_interval
30.0
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.models import DeploymentStrategy
from crackseg.utils.deployment.monitoring.rules import RULES
from crackseg.utils.deployment.monitoring.spec import (
    DEPLOYMENT_ID_PATTERN,
    MAX_TIMEOUT,
    MIN_INTERVAL,
    AlertThresholds,
    CheckFields,
    DeploymentSpec,
)
from crackseg.utils.deployment.redact import MASK, redact_url
from crackseg.utils.deployment.service.config_parse import (
    ConfigFileError,
    parse_duration,
    read_yaml,
    redact_value,
    substitute_env,
    translate_errors,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_ROWS",
    "AlertThresholds",
    "ConfigFileError",
    "DeployConfig",
    "DeploymentSettings",
    "Duration",
    "HandlerSpec",
    "HostConfig",
    "IntervalDuration",
    "MonitorConfig",
    "MonitorSettings",
    "PositiveDuration",
    "RetentionConfig",
    "RouterConfig",
    "ServerConfig",
    "StoreConfig",
    "TargetConfig",
    "TimeoutDuration",
    "load_config",
    "parse_config",
    "parse_duration",
    "substitute_env",
]

Duration = Annotated[float, BeforeValidator(parse_duration), Field(allow_inf_nan=False)]
PositiveDuration = Annotated[
    float, BeforeValidator(parse_duration), Field(gt=0, allow_inf_nan=False)
]
#: An interval: at least :data:`~.spec.MIN_INTERVAL` (0.1 s), finite.
IntervalDuration = Annotated[
    float, BeforeValidator(parse_duration), Field(ge=MIN_INTERVAL, allow_inf_nan=False)
]
TimeoutDuration = Annotated[
    float, BeforeValidator(parse_duration), Field(gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)
]
_ID = DEPLOYMENT_ID_PATTERN
_FILE_KEYS = {"deployment_id": "id", "health_check_url": "url"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentSettings(DeploymentSpec):
    """One monitored deployment of the file: :class:`~.spec.DeploymentSpec` with the keys
    ``id`` and ``url`` and durations such as ``"30s"``. ``None`` fields fall back to the
    ``monitor`` section."""

    model_config = ConfigDict(
        alias_generator=lambda name: _FILE_KEYS.get(name, name), serialize_by_alias=True
    )

    thresholds: AlertThresholds = AlertThresholds()

    @field_validator("check_interval", "timeout", "repeat_interval", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> Any:
        return parse_duration(v)

    @field_serializer("health_check_url")
    def _hide_url_secrets(self, url: str) -> str:
        return redact_url(url)

    @property
    def id(self) -> str:
        """The deployment id (the file's ``id`` key)."""
        return self.deployment_id

    @property
    def url(self) -> str:
        """The health check URL (the file's ``url`` key)."""
        return self.health_check_url

    def monitor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``DeploymentHealthMonitor.add_deployment_monitoring``."""
        return {
            "deployment_id": self.deployment_id,
            "health_check_url": self.health_check_url,
            "process_name": self.process_name,
            "check_interval": self.check_interval,
            "timeout": self.timeout,
            "thresholds": self.thresholds.as_dict() or None,
            "failure_threshold": self.failure_threshold,
            "success_threshold": self.success_threshold,
            "repeat_interval": self.repeat_interval,
            # The check's own fields, as set (the same names in the file and the library).
            **self.model_dump(include=set(CheckFields.__annotations__), exclude_none=True),
        }


class MonitorSettings(_Model):
    """Defaults of the monitor itself (``DeploymentHealthMonitor`` constructor arguments)."""

    failure_threshold: int = Field(default=3, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    repeat_interval: IntervalDuration = 3600.0
    error_rate_window: IntervalDuration = 300.0
    default_timeout: TimeoutDuration = 10.0
    max_history: int = Field(default=1000, ge=1)
    #: Per alert type, e.g. ``{high_cpu_usage: 10m}``: overrides ``repeat_interval``.
    repeat_intervals: dict[str, IntervalDuration] = {}
    #: A deployment changing state more than this often in ``flap_window`` alerts once as
    #: flapping; ``null`` turns flap detection off.
    flap_max_changes: int | None = Field(default=6, ge=1)
    flap_window: IntervalDuration = 600.0

    @field_validator("repeat_intervals")
    @classmethod
    def _known_rules(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(RULES))
        if unknown:
            raise ValueError(
                f"unknown alert type {unknown[0]!r}; use one of {', '.join(sorted(RULES))}"
            )
        return v


class HandlerSpec(BaseModel):
    """One alert handler: ``type`` picks the channel, the other keys are its options,
    checked on load against the channel's options model (``delivery.channels.*Options``:
    durations as strings, ``name``, ``send_resolved``, ``retry: {initial, max_delay,
    max_age}``). :meth:`spec` is what ``delivery.build_handler`` takes; ``repr`` and dumps
    mask secrets.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["log", "webhook", "slack", "email", "alertmanager"]

    def spec(self) -> dict[str, Any]:
        """The handler dict, secrets included, for ``build_handler``."""
        return {"type": self.type, **(self.model_extra or {})}

    @model_serializer(mode="plain")
    def _serialize(self) -> dict[str, Any]:
        extra = self.model_extra or {}
        # ``key`` is the handler's name, not a credential: keep it readable.
        return {
            "type": self.type,
            **{k: v if k == "key" else redact_value(k, v) for k, v in extra.items()},
        }

    def __repr_args__(self) -> Any:
        return list(self._serialize().items())


#: Default retention: a week by age (the longest uptime window), and a day of checks at 10 s
#: per deployment. 10,000 deployments at 10 s then hold at most 86.4 M health rows, about
#: 7 GB at the ~80 B a row bench_store.py measures (docs/performance.md), instead of growing
#: ~15 GB a day; deployments with a process add as many resource rows.
DEFAULT_MAX_AGE = 7 * 86400.0
DEFAULT_MAX_ROWS = 8640


class RetentionConfig(_Model):
    """How long history is kept: by age (a duration) and by rows per deployment (the newest).

    Both bounded by default (a week, 8,640 rows); ``null`` turns one off.
    """

    max_age: PositiveDuration | None = DEFAULT_MAX_AGE
    max_rows: int | None = Field(default=DEFAULT_MAX_ROWS, ge=1)


class StoreConfig(_Model):
    """The SQLite history file; a relative path is relative to the config file's folder."""

    path: str = "crackseg-monitor.db"
    flush_interval: IntervalDuration = 1.0
    retention: RetentionConfig = RetentionConfig()


class ServerConfig(_Model):
    """The web server: status page, API, ``/metrics``. Binds 127.0.0.1 unless told otherwise."""

    enabled: bool = True
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = None
    protect_reads: bool = False
    #: ``/metrics`` behind the token too (Prometheus sends it with ``authorization:`` in its
    #: scrape config).
    protect_metrics: bool = False
    #: The ``monitor_instance`` label on every series of ``/metrics``: what tells the monitors
    #: of a pair apart in one Prometheus job (default: this host's name and the bound port).
    monitor_instance: str | None = Field(default=None, min_length=1, max_length=253)

    @model_validator(mode="after")
    def _reads_need_token(self) -> ServerConfig:
        for option in ("protect_reads", "protect_metrics"):
            if getattr(self, option) and self.token is None:
                raise ValueError(f"{option}: true needs a token to be set")
        return self


class TargetConfig(_Model):
    """Where versions run: local processes (:class:`~.targets.process.ProcessTarget`).

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


class HostConfig(_Model):
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


class RouterConfig(_Model):
    """How traffic moves between versions: ``nginx`` (one the CLI starts) or ``none``."""

    type: Literal["nginx", "none"] = "none"
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8000, ge=0, le=65535)
    workdir: str | None = None

    @field_validator("listen_host", "workdir")
    @classmethod
    def _fits_nginx_conf(cls, v: str | None, info: ValidationInfo) -> str | None:
        # Both are written into nginx.conf: refused here, not when a rollout starts.
        from crackseg.utils.deployment.rollout.routers.nginx_conf import nginx_setting

        return v if v is None else nginx_setting(str(info.field_name), v)


class DeployConfig(_Model):
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
    rollout: dict[str, Any] = {}

    @field_validator("version", "stable_version")
    @classmethod
    def _deployable(cls, v: str | None) -> str | None:
        from crackseg.utils.deployment.rollout.config import check_version

        return v if v is None else check_version(v)

    def deployment_config(self, version: str, deployment_id: str | None = None) -> Any:
        """The orchestrator's ``DeploymentConfig`` for ``version`` (ConfigError if invalid)."""
        from crackseg.utils.deployment.rollout.config import DeploymentConfig as Rollout

        known = {f.name for f in dataclasses.fields(Rollout)}
        fixed = {"artifact_id", "target_environment", "version", "deployment_id"}
        for key in self.rollout:
            if key not in known or key in fixed:
                options = ", ".join(sorted(known - fixed))
                raise ConfigError(key, f"unknown key; expected one of: {options}")
        return Rollout(
            artifact_id=self.name,
            target_environment=self.environment,
            version=version,
            deployment_id=deployment_id,
            health_check_path=self.rollout.get("health_check_path", self.target.health_path),
            **{k: v for k, v in self.rollout.items() if k != "health_check_path"},
        )


class MonitorConfig(_Model):
    """The whole file. Only ``deployments`` is usually needed; everything else has defaults."""

    deployments: list[DeploymentSettings] = []
    alert_thresholds: AlertThresholds = AlertThresholds()
    monitor: MonitorSettings = MonitorSettings()
    handlers: list[HandlerSpec] = []
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    #: Windows in :meth:`~.silences.MaintenanceWindow.from_config`'s format (checked on load).
    maintenance: list[dict[str, Any]] = []
    deploy: DeployConfig | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    source: str | None = Field(default=None, exclude=True)

    def deployment(self, deployment_id: str) -> DeploymentSettings:
        """The deployment with this id (KeyError if absent)."""
        for d in self.deployments:
            if d.id == deployment_id:
                return d
        raise KeyError(deployment_id)

    def store_path(self) -> Path:
        """The store file, resolved against the config file's folder."""
        path = Path(self.store.path).expanduser()
        if not path.is_absolute() and self.source is not None:
            path = Path(self.source).resolve().parent / path
        return path

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain data with every secret masked (safe to print or log)."""
        data = self.model_dump(mode="json")
        if self.server.token is not None:
            data["server"]["token"] = MASK
        return data


def _duplicate_ids(data: Any) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not isinstance(data, dict) or not isinstance(data.get("deployments"), list):
        return problems
    seen: dict[str, int] = {}
    for i, d in enumerate(data["deployments"]):
        if isinstance(d, dict) and isinstance(d.get("id"), str):
            if d["id"] in seen:
                problems.append(
                    (
                        f"deployments[{i}].id",
                        f"duplicate id {d['id']!r} (already used by deployments[{seen[d['id']]}])",
                    )
                )
            else:
                seen[d["id"]] = i
    return problems


def parse_config(
    data: Any, *, source: str | None = None, env: Mapping[str, str] | None = None
) -> MonitorConfig:
    """Validate already-parsed YAML/JSON data (after ``${VAR}`` substitution)."""
    label = source or "<config>"
    if data is None:
        raise ConfigFileError(label, [("<root>", "the file is empty; expected a mapping")])
    if not isinstance(data, dict):
        raise ConfigFileError(
            label, [("<root>", f"must be a mapping of keys, got {type(data).__name__}")]
        )
    resolved: list[str] = []
    data, problems = substitute_env(data, env, resolved=resolved)
    problems += _duplicate_ids(data)
    try:
        cfg = MonitorConfig.model_validate(
            {**data, "source": source}, context={"secrets": tuple(resolved)}
        )
    except ValidationError as exc:
        # A missing variable already has its line; its empty stand-in would add a second.
        seen = {where for where, _ in problems}
        problems += [p for p in translate_errors(exc, MonitorConfig) if p[0] not in seen]
        cfg = None
    if cfg is not None:
        problems += _semantic_problems(cfg)
    if problems or cfg is None:
        raise ConfigFileError(label, problems)
    return cfg


def _semantic_problems(cfg: MonitorConfig) -> list[tuple[str, str]]:
    from crackseg.utils.deployment.delivery.handler_options import option_problems
    from crackseg.utils.deployment.delivery.registry import HANDLER_TYPES
    from crackseg.utils.deployment.monitoring.suppression import MaintenanceSchedule

    problems: list[tuple[str, str]] = []
    for i, handler in enumerate(cfg.handlers):  # every problem of every handler, in one run
        options = dict(handler.model_extra or {})
        found = option_problems(HANDLER_TYPES[handler.type].Options, options)
        problems += [(f"handlers[{i}].{field}", what) for field, what in found]
    try:
        MaintenanceSchedule.from_config(cfg.maintenance)
    except ConfigError as exc:
        problems.append((exc.field, exc.problem))
    if cfg.deploy is not None:
        try:
            cfg.deploy.deployment_config(cfg.deploy.version or "v1")
        except ConfigError as exc:
            problems.append((f"deploy.rollout.{exc.field}", exc.problem))
        except TypeError as exc:
            problems.append(("deploy.rollout", str(exc)))
        for i, h in enumerate(cfg.deploy.hosts):
            try:
                h.ssh_host()
            except ConfigError as exc:
                problems.append((f"deploy.hosts[{i}].{exc.field.rsplit('.', 1)[-1]}", exc.problem))
    return problems


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> MonitorConfig:
    """Read, substitute and validate a YAML file; raise :class:`ConfigFileError` on any problem.

    Hostile files are refused quickly and by position (``FILE, line L, column C``): more than
    :data:`~.config_parse.MAX_FILE_BYTES`, bytes that are not UTF-8, nesting deeper than
    :data:`~.config_parse.MAX_DEPTH`, aliases expanding past :data:`~.config_parse.MAX_NODES`
    values (an alias bomb) or referring to themselves.
    """
    p = Path(path)
    return parse_config(read_yaml(p), source=str(p), env=env)
