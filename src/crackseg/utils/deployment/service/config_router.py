"""The ``deploy.router`` section of the service's configuration: how traffic moves.

- ``type: none``: no router (the user moves traffic).
- ``type: nginx``, ``mode: own`` (default): the service starts its own nginx on
  ``listen_host:listen_port`` with its files in ``workdir``.
- ``type: nginx``, ``mode: include``: the host's nginx serves. The service writes
  ``upstream.conf`` and ``server.conf`` into ``workdir`` (the folder the host's nginx
  includes, both at ``http`` level: ``include /var/lib/crackseg/nginx/upstream.conf;
  include /var/lib/crackseg/nginx/server.conf;``), checks each change with ``nginx -t`` of
  the host's ``main_config`` and reloads that nginx (``nginx -c main_config -s reload``:
  the master named by its pid file). It never starts or stops that nginx.

``listen_tls`` (either mode) adds a TLS listener to the server: ``port``, and the PEM
``certificate`` and ``certificate_key`` paths (readable by nginx; quoted in the
configuration, so a path with spaces is fine).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from crackseg.utils.deployment.service.config_parse import FileSection

__all__ = ["RouterConfig", "TlsListenConfig"]


def _fits_nginx_conf(field: str, value: str) -> str:
    # Written into nginx's configuration: refused here, not when a rollout starts.
    from crackseg.utils.deployment.rollout.routers.nginx_conf import nginx_setting

    return nginx_setting(field, value)


class TlsListenConfig(FileSection):
    """``deploy.router.listen_tls``: a TLS ``listen`` with its certificate and key."""

    #: The TLS port, on the router's listen_host.
    port: int = Field(ge=1, le=65535)
    #: PEM certificate (chain) path, readable by nginx.
    certificate: str = Field(min_length=1)
    #: PEM private key path, readable by nginx.
    certificate_key: str = Field(min_length=1)

    @field_validator("certificate", "certificate_key")
    @classmethod
    def _path(cls, v: str, info: ValidationInfo) -> str:
        return _fits_nginx_conf("workdir", v)

    def tls_listen(self) -> Any:
        """The router's :class:`~..rollout.routers.nginx_conf.TlsListen` (ConfigError if a file is unreadable)."""
        from crackseg.utils.deployment.rollout.routers.nginx_conf import TlsListen

        return TlsListen(self.port, self.certificate, self.certificate_key)


class RouterConfig(FileSection):
    """How traffic moves between versions: ``nginx`` (``mode: own``, one the service
    starts, or ``mode: include``, the host's) or ``none``."""

    type: Literal["nginx", "none"] = "none"
    #: own: the service starts its nginx; include: the host's nginx includes workdir's files.
    mode: Literal["own", "include"] = "own"
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8000, ge=0, le=65535)
    workdir: str | None = None
    #: The host nginx's main configuration (``mode: include``).
    main_config: str = "/etc/nginx/nginx.conf"
    #: A TLS listener of the server (port, certificate and key paths), in either mode.
    listen_tls: TlsListenConfig | None = None

    @field_validator("listen_host", "workdir", "main_config")
    @classmethod
    def _fits(cls, v: str | None, info: ValidationInfo) -> str | None:
        return v if v is None else _fits_nginx_conf(str(info.field_name), v)

    @model_validator(mode="after")
    def _include_needs(self) -> RouterConfig:
        if self.mode == "include":
            if self.workdir is None:
                raise ValueError(
                    "mode: include needs workdir: the folder the host's nginx includes"
                )
            if self.listen_port == 0:
                raise ValueError(
                    "mode: include needs listen_port: the port of the server it writes"
                )
        return self
