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

import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from crackseg.utils.deployment.durations import Duration
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.files import secret_files
from crackseg.utils.deployment.monitoring.settings import MonitorSettings
from crackseg.utils.deployment.monitoring.spec import (
    DEPLOYMENT_ID_PATTERN,
    MAX_INTERVAL,
    MIN_INTERVAL,
    AlertThresholds,
    CheckFields,
    DeploymentSpec,
)
from crackseg.utils.deployment.redact import MASK, redact_url
from crackseg.utils.deployment.service.config_deploy import (
    DeployConfig,
    HostConfig,
    PositiveDuration,
    RolloutOptions,
    RouterConfig,
    TargetConfig,
    deploy_problems,
)
from crackseg.utils.deployment.service.config_parse import (
    ConfigFileError,
    FileSection,
    parse_duration,
    read_yaml,
    redact_value,
    substitute_env,
    valid_or_none,
)
from crackseg.utils.deployment.validation import problems as validation_problems

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
    "MaintenanceWindowSpec",
    "MonitorConfig",
    "MonitorSettings",
    "PositiveDuration",
    "RetentionConfig",
    "RolloutOptions",
    "RouterConfig",
    "ServerConfig",
    "StoreConfig",
    "TargetConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "substitute_env",
]

#: An interval: at least :data:`~..monitoring.spec.MIN_INTERVAL` (0.1 s), at most a day.
IntervalDuration = Annotated[Duration, Field(ge=MIN_INTERVAL, le=MAX_INTERVAL)]
_ID = DEPLOYMENT_ID_PATTERN
_FILE_KEYS = {"deployment_id": "id", "health_check_url": "url"}


class DeploymentSettings(DeploymentSpec):
    """One monitored deployment of the file: :class:`~..monitoring.spec.DeploymentSpec` with the keys
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
            "group": self.group,
            "public": self.public,
            # The check's own fields, as set (the same names in the file and the library).
            **self.model_dump(include=set(CheckFields.__annotations__), exclude_none=True),
        }


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


class RetentionConfig(FileSection):
    """How long history is kept: by age (a duration) and by rows per deployment (the newest).

    Both bounded by default (a week, 8,640 rows); ``null`` turns one off.
    """

    max_age: PositiveDuration | None = DEFAULT_MAX_AGE
    max_rows: int | None = Field(default=DEFAULT_MAX_ROWS, ge=1)


class StoreConfig(FileSection):
    """The SQLite history file; a relative path is relative to the config file's folder."""

    path: str = "crackseg-monitor.db"
    flush_interval: IntervalDuration = 1.0
    retention: RetentionConfig = RetentionConfig()


class ServerConfig(FileSection):
    """The web server: status page, API, ``/metrics``. Binds 127.0.0.1 unless told otherwise.

    ``token_file: /run/credentials/crackseg-monitor.service/token`` reads the token from a file
    (trailing newline stripped), as every secret-bearing option of the file can.
    """

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
    #: Directories whose files a deployment added through the API may name as its
    #: ``tls.ca_file``, ``cert_file`` or ``key_file`` (absolute paths; symbolic links are
    #: resolved). Empty: file paths are refused through the API; this file names any.
    allowed_file_dirs: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default=[], max_length=64
    )

    @field_validator("allowed_file_dirs")
    @classmethod
    def _absolute_dirs(cls, dirs: list[str]) -> list[str]:
        relative = [f"[{i}] {d!r}" for i, d in enumerate(dirs)
                    if not os.path.isabs(os.path.expanduser(d))]  # fmt: skip
        if relative:
            raise ValueError(f"relative: {', '.join(relative)}; give absolute directory paths")
        return dirs

    @model_validator(mode="after")
    def _reads_need_token(self) -> ServerConfig:
        for option in ("protect_reads", "protect_metrics"):
            if getattr(self, option) and self.token is None:
                raise ValueError(f"{option}: true needs a token to be set")
        return self


class MaintenanceWindowSpec(FileSection):
    """One ``maintenance`` window (see
    :meth:`~crackseg.utils.deployment.monitoring.suppression.MaintenanceWindow.from_config`):
    weekly ``days`` with ``start``/``end`` times of day (``"22:00"``), or one-off ISO
    date-times; ``timezone`` an IANA name; ``deployments`` ids or globs (none: all)."""

    name: str | None = Field(default=None, min_length=1, max_length=128)
    deployments: str | list[str] = []
    days: str | int | list[str | int] | None = None
    # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320, and an ISO date-time as
    # a datetime: the window's parser takes all three.
    start: str | int | datetime
    end: str | int | datetime
    timezone: str = "UTC"

    def window_spec(self) -> dict[str, Any]:
        """The mapping :meth:`MaintenanceWindow.from_config` reads (unset keys left out)."""
        return self.model_dump(exclude_unset=True)


class MonitorConfig(FileSection):
    """The whole file. Only ``deployments`` is usually needed; everything else has defaults."""

    deployments: list[DeploymentSettings] = []
    alert_thresholds: AlertThresholds = AlertThresholds()
    monitor: MonitorSettings = MonitorSettings()
    handlers: list[HandlerSpec] = []
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    #: Windows in :meth:`~..monitoring.suppression.MaintenanceWindow.from_config`'s format (checked on load).
    maintenance: list[MaintenanceWindowSpec] = []
    deploy: DeployConfig | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    source: str | None = Field(default=None, exclude=True)

    def deployment(self, deployment_id: str) -> DeploymentSettings:
        """The deployment with this id (KeyError if absent)."""
        for d in self.deployments:
            if d.id == deployment_id:
                return d
        raise KeyError(deployment_id)

    def maintenance_specs(self) -> list[dict[str, Any]]:
        """The ``maintenance`` windows as :meth:`MaintenanceSchedule.from_config` reads them."""
        return [w.window_spec() for w in self.maintenance]

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
    if isinstance(data.get("server"), dict):  # server.token_file: the token from a file
        server, found_files = secret_files(data["server"], ["token"])
        data = {**data, "server": server}
        problems += [(f"server.{key}", what) for key, what in found_files]
    found: list[tuple[str, str]] = []
    try:
        cfg = MonitorConfig.model_validate(
            {**data, "source": source}, context={"secrets": tuple(resolved)}
        )
    except ValidationError as exc:
        # A missing variable already has its line; its empty stand-in would add a second.
        seen = {where for where, _ in problems}
        found += [p for p in validation_problems(exc, MonitorConfig) if p[0] not in seen]
        cfg = None
    found += _semantic_problems(data)
    # In the order of the file's sections and list items, so the lines read top to bottom.
    order = {key: i for i, key in enumerate(data)}

    def place(problem: tuple[str, str]) -> tuple[int, int]:
        m = re.match(r"([^.\[]*)(?:\[(\d+)\])?", problem[0])
        assert m is not None  # the pattern matches any string
        return order.get(m.group(1), len(order)), int(m.group(2) or -1)

    found.sort(key=place)
    problems += found
    if problems or cfg is None:
        raise ConfigFileError(label, problems)
    return cfg


def _semantic_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """What the sections' own checks find (handler options, maintenance windows, the
    rollout and its hosts), for every section that is well-formed even when others are not:
    a file's problems are all reported in one run."""
    from crackseg.utils.deployment.delivery.handler_options import option_problems
    from crackseg.utils.deployment.delivery.registry import HANDLER_TYPES
    from crackseg.utils.deployment.monitoring.suppression import MaintenanceWindow

    def listed(key: str) -> list[Any]:
        value = data.get(key)
        return value if isinstance(value, list) else []

    problems: list[tuple[str, str]] = []
    for i, raw in enumerate(listed("handlers")):  # every problem of every handler
        if (handler := valid_or_none(HandlerSpec, raw)) is not None:
            options = dict(handler.model_extra or {})
            found = option_problems(HANDLER_TYPES[handler.type].Options, options)
            problems += [(f"handlers[{i}].{field}", what) for field, what in found]
    for i, raw in enumerate(listed("maintenance")):  # every window's problem
        if (window := valid_or_none(MaintenanceWindowSpec, raw)) is not None:
            try:
                MaintenanceWindow.from_config(window.window_spec(), f"maintenance[{i}]")
            except ConfigError as exc:
                problems += exc.problems
    return problems + deploy_problems(data.get("deploy"))


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
