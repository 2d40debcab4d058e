"""nginx config text for :class:`~.nginx.NginxRouter`, and small helpers about nginx processes.

Files in ``workdir`` (a new temporary folder unless given):

- ``upstream.conf``: the ``crackseg_backend`` upstream (one ``server`` line per backend with weight
  > 0, smooth weighted round robin, keep-alive pool) and the config generation number. Rewritten
  atomically (candidate file, ``nginx -t``, rename) on each :meth:`~.nginx.NginxRouter.apply`.
- ``locations.conf``: the server's locations: ``/__router/config`` answers
  ``{"generation": N}`` from the config that served the request; ``/`` proxies to the upstream
  with HTTP/1.1 keep-alive and retries another backend (a ``backup`` one included: the
  previous version kept warm) on connection errors, timeouts, 502 and 503, at most 3 tries
  within ``proxy_timeout``. Non-idempotent requests (POST, PATCH...) are not retried: one may
  have been acted on before its backend died.
- ``access.log``: one line per proxied request with every upstream attempt's backend, status
  and time (:mod:`.nginx_log`), read incrementally by :meth:`~.nginx.NginxRouter.measure`, rotated
  past ``max_log_bytes``.
- ``nginx.conf`` (owned mode): the whole config of the nginx master this router starts
  (``daemon off``, its own pid file, ``error.log`` and temp folders, ``worker_shutdown_timeout``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

from crackseg.utils.deployment.errors import (
    ConfigError,
    ConfigProblems,
    RouterError,
    require_positive,
)
from crackseg.utils.deployment.processes import check_host, host_port
from crackseg.utils.deployment.rollout.routers.base import Backend
from crackseg.utils.deployment.rollout.routers.nginx_log import LOG_FORMAT, LOG_FORMAT_NAME

__all__ = [
    "CLOSED_LOCATIONS",
    "CONFIG_PATH",
    "LOCATIONS_CONF",
    "MAIN_CONF",
    "SERVER_CONF",
    "UPSTREAM_NAME",
    "TlsListen",
    "check_listen_host",
    "conf_value",
    "describe",
    "duration",
    "durations",
    "file_backends",
    "file_generation",
    "listen_address",
    "nginx_setting",
    "pid_file_of",
    "render_tls",
    "render_upstream",
    "sample_versions",
    "seconds",
    "served_generation",
    "still_accepting",
    "validate",
]


UPSTREAM_NAME = "crackseg_backend"
CONFIG_PATH = "/__router/config"
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]+$")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)?$")
_SAFE_LABEL = re.compile(r"[^A-Za-z0-9._:-]+")

#: Every path and address below is a value from :func:`conf_value` or :func:`listen_address`:
#: quoted, and refused if it could end the directive or open a block.
MAIN_CONF = """\
# Written by crackseg NginxRouter; regenerated on start.
daemon off;
master_process on;
worker_processes {worker_processes};
pid {pid_file};
error_log {error_log} notice;
worker_shutdown_timeout {worker_shutdown_timeout};
events {{ worker_connections 2048; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {body_temp};
    proxy_temp_path {proxy_temp};
    fastcgi_temp_path {fastcgi_temp};
    uwsgi_temp_path {uwsgi_temp};
    scgi_temp_path {scgi_temp};
    include {upstream_file};
    server {{
        listen {listen};
{tls}        keepalive_timeout 65s;
        keepalive_requests 10000;
        include {locations_file};
    }}
}}
"""

#: The server of include mode (``server_snippet=True``): your nginx includes it at ``http``
#: level, beside ``upstream.conf``.
SERVER_CONF = """\
# Written by crackseg NginxRouter: include at http level, beside upstream.conf.
server {{
    listen {listen};
{tls}    keepalive_timeout 65s;
    keepalive_requests 10000;
    include {locations_file};
}}
"""

#: The generation a router confirms its reloads by (both ``locations.conf`` texts have it).
_CONFIG_LOCATION = """\
location = {config_path} {{
    access_log off;
    default_type application/json;
    add_header Cache-Control no-store always;
    return 200 '{{"generation": $crackseg_router_generation}}\\n';
}}
"""

#: ``locations.conf`` once an include-mode router closed: the host's nginx still includes
#: it, and answers 503 rather than proxying to the versions stopped with the router.
CLOSED_LOCATIONS = (
    "# Written by crackseg NginxRouter when it closed: no version is served here now.\n"
    + _CONFIG_LOCATION
    + """\
location / {{
    default_type text/plain;
    add_header Retry-After 60 always;
    return 503 "no version is deployed here: its router closed\\n";
}}
"""
)

LOCATIONS_CONF = (
    "# Written by crackseg NginxRouter: include inside the server block.\n"
    + _CONFIG_LOCATION
    + """\
location / {{
    proxy_pass http://{upstream};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_connect_timeout 2s;
    proxy_send_timeout {proxy_timeout};
    proxy_read_timeout {proxy_timeout};
    # Idempotent requests only: a POST may have been acted on before its backend died.
    proxy_next_upstream error timeout http_502 http_503;
    proxy_next_upstream_tries 3;
    proxy_next_upstream_timeout {proxy_timeout};
    access_log {access_log} {log_format_name} buffer=64k flush={log_flush};
    add_header X-Router-Generation $crackseg_router_generation always;
}}
"""
)


#: What a value written into nginx's configuration may not hold: it would end the
#: directive (``;``), open or close a block, end the quotes, expand a variable, or start a
#: new line.
_UNSAFE = re.compile(r'[;{}"\'$\\\x00-\x1f\x7f]')


def conf_value(field: str, value: str | os.PathLike[str]) -> str:
    """``value`` double-quoted for nginx's configuration (a path with spaces works);
    :class:`ConfigError` naming ``field`` if it holds ``; { } " ' $ \\`` or a control
    character (a line break), which is never written."""
    text = os.fspath(value)
    bad = _UNSAFE.search(text)
    if bad is not None:
        raise ConfigError(
            field,
            f"{text!r} holds {bad.group()!r}: nginx would read it as configuration; "
            "use a path without ; { } quotes $ \\ or line breaks",
        )
    return f'"{text}"'


def check_listen_host(host: str) -> str:
    """``host`` if nginx can listen on it (an IPv4 or IPv6 address, or a host name), else
    :class:`ConfigError` naming ``listen_host``; an IPv6 address comes back bare (``::1``)."""
    return check_host("listen_host", host)


def listen_address(host: str, port: int) -> str:
    """The quoted value of nginx's ``listen`` directive for ``host`` and ``port``."""
    return conf_value("listen_host", host_port(check_listen_host(host), port))


def nginx_setting(field: str, value: str) -> str:
    """``value`` of the setting ``listen_host`` or ``workdir`` as the router will use it;
    ValueError with the problem (for a configuration model) when nginx cannot take it."""
    try:
        if field == "listen_host":
            return check_listen_host(value)
        conf_value(field, value)
    except ConfigError as exc:
        raise ValueError(exc.problem) from None
    return value


@dataclass(frozen=True)
class TlsListen:
    """A TLS ``listen`` of the router's server: ``port`` (on the router's ``listen_host``),
    the PEM ``certificate`` (chain) and its private key ``certificate_key`` (paths nginx
    reads at each reload)."""

    port: int
    certificate: str
    certificate_key: str

    def __post_init__(self) -> None:
        found = ConfigProblems()  # every problem in one error
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            found.add("listen_tls.port", f"must be a port 1-65535, got {self.port!r}")
        for name in ("certificate", "certificate_key"):
            path = getattr(self, name)
            with found.check():
                conf_value(f"listen_tls.{name}", path)  # written into the config: refused now
                if not os.access(path, os.R_OK):
                    raise ConfigError(
                        f"listen_tls.{name}",
                        f"{path!r} is not a readable file; give the PEM file's path",
                    )
        found.raise_any()


def render_tls(tls: TlsListen | None, host: str, indent: int) -> str:
    """The TLS lines of the server block (none without ``tls``), each value quoted."""
    if tls is None:
        return ""
    pad = " " * indent
    return (
        f"{pad}listen {listen_address(host, tls.port)} ssl;\n"
        f"{pad}ssl_certificate {conf_value('listen_tls.certificate', tls.certificate)};\n"
        f"{pad}ssl_certificate_key "
        f"{conf_value('listen_tls.certificate_key', tls.certificate_key)};\n"
        f"{pad}ssl_protocols TLSv1.2 TLSv1.3;\n"
    )


def duration(field: str, value: str | float) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        require_positive(field, value, allow_zero=True)
        return f"{round(value * 1000)}ms"
    if not isinstance(value, str) or not _DURATION.match(value):
        raise ConfigError(field, f"must be seconds or an nginx duration like '10s', got {value!r}")
    return value


def durations(found: ConfigProblems, **values: str | float) -> dict[str, str]:
    """Each of ``values`` as an nginx duration (:func:`duration`); the problem of one that
    is refused goes to ``found`` and it is left out."""
    out: dict[str, str] = {}
    for name, value in values.items():
        with found.check():
            out[name] = duration(name, value)
    return out


def render_upstream(
    generation: int, backends: list[Backend], *, max_fails: int, fail_timeout: str, keepalive: int
) -> str:
    """The upstream file: generation marker, one server per backend with weight > 0, pool."""
    lines = [
        f"# Written by crackseg NginxRouter: generation {generation}.",
        f'map $pid $crackseg_router_generation {{ default "{generation}"; }}',
        f"log_format {LOG_FORMAT_NAME} '{LOG_FORMAT}';",
        f"upstream {UPSTREAM_NAME} {{",
    ]
    live = [b for b in backends if b.weight > 0]
    for b in live:
        label = _SAFE_LABEL.sub("_", b.label)
        weight = 1 if b.backup else b.weight
        backup = " backup" if b.backup else ""
        lines.append(
            f"    server {b.address} weight={weight} max_fails={max_fails}"
            f" fail_timeout={fail_timeout}{backup};  # {label}"
        )
    if not live:
        # nginx needs one server; with none usable, requests get 502 until the first apply.
        lines.append("    server 127.0.0.1:9 down;")
    lines += [
        f"    keepalive {keepalive};",
        "    keepalive_timeout 60s;",
        "    keepalive_requests 10000;",
        "}",
        "",
    ]
    return "\n".join(lines)


def served_generation(host: str, port: int) -> int | str | None:
    """The generation nginx answers on a fresh connection, or a description of what went wrong."""
    conn = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        conn.request("GET", CONFIG_PATH, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(4096)
        if resp.status != 200:
            return f"HTTP {resp.status}"
        value = json.loads(body).get("generation")
        return value if isinstance(value, int) else repr(value)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def pid_file_of(main_config: str | None) -> Path:
    """The pid file named by an nginx config's ``pid`` directive (Debian's default otherwise)."""
    if main_config:
        try:
            text = Path(main_config).read_text()
        except OSError:
            text = ""
        match = re.search(r"""^\s*pid\s+(?:"([^"]+)"|'([^']+)'|([^;\s]+))\s*;""", text, re.M)
        if match:
            return Path(next(g for g in match.groups() if g))
    return Path("/run/nginx.pid")


def validate(backends: list[Backend]) -> None:
    if not backends or not any(b.weight > 0 and not b.backup for b in backends):
        raise RouterError("apply needs at least one backend with weight > 0 that is not a backup")
    for b in backends:
        if isinstance(b.weight, bool) or not isinstance(b.weight, int) or b.weight < 0:
            raise RouterError(
                f"backend {b.address!r}: weight must be an int >= 0, got {b.weight!r}"
            )
        if not _ADDRESS.match(b.address):
            # Also keeps anything that could smuggle nginx directives out of the config.
            raise RouterError(f"backend address must be host:port, got {b.address!r}")


_SERVER = re.compile(r"^\s*server (\S+) weight=([0-9]+) [^;]*?( backup)?;\s*#\s*(\S*)\s*$", re.M)


def file_backends(path: Path) -> list[Backend]:
    """The backends an upstream file written by :func:`render_upstream` routes to."""
    try:
        text = path.read_text()
    except OSError:
        return []
    return [
        Backend(m.group(1), int(m.group(2)), m.group(4), backup=bool(m.group(3)))
        for m in _SERVER.finditer(text)
    ]


def file_generation(path: Path) -> int | None:
    try:
        match = re.search(r"generation ([0-9]+)", path.read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def describe(backends: list[Backend]) -> str:
    return ", ".join(f"{b.label or b.address}={b.weight}" for b in backends)


def still_accepting(pid: int) -> bool:
    """An old worker counts as gone once nginx told it to quit (it closed its listen sockets)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return "shutting down" not in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def seconds(duration: str) -> float:
    match = re.match(r"^([0-9]+)(ms|s|m|h)?$", duration)
    if match is None:
        return 10.0
    scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return int(match.group(1)) * scale


def sample_versions(host: str, port: int, path: str, count: int, header: str) -> Counter[str]:
    """``count`` GETs of ``path``, each on a fresh connection: the ``header`` values seen
    (``"HTTP <status>"`` or ``"error"`` for failures)."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        conn = http.client.HTTPConnection(host, port, timeout=2.0)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read(65536)
            value = resp.getheader(header, "")
            seen[value if 200 <= resp.status < 300 else f"HTTP {resp.status}"] += 1
        except (OSError, http.client.HTTPException):
            seen["error"] += 1
        finally:
            conn.close()
    return seen
