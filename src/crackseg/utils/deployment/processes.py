"""Operating-system process helpers shared by targets and routers (neither imports the other)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
import threading

from crackseg.utils.deployment.errors import ConfigError, DeploymentError

__all__ = ["check_host", "free_port", "host_port", "signal_group"]

# Ports handed out recently by this process: bind(0) may return a port again soon after it is
# released, before the child that was given it has bound it.
_recent_ports: list[int] = []
_ports_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` (an IPv4 or bare IPv6 address) now (not reserved:
    bind it soon)."""
    with _ports_lock:
        for _ in range(50):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _recent_ports:
                _recent_ports.append(port)
                del _recent_ports[:-256]
                return port
    raise DeploymentError("could not find a free TCP port")


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to process group ``pgid``; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def host_port(host: str, port: int) -> str:
    """``host:port`` as URLs, nginx and upstreams write it: ``[::1]:8000`` for IPv6."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


def check_host(field: str, host: object) -> str:
    """``host`` if a router can send traffic to it and a socket can bind it (an IPv4 or
    IPv6 address, or a host name), else :class:`ConfigError` naming ``field``; an IPv6
    address comes back bare (``::1``)."""
    text = host if isinstance(host, str) else ""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if not _HOSTNAME.match(text):
        raise ConfigError(
            field, f"must be an IP address (127.0.0.1, ::1) or a host name, got {host!r}"
        )
    return text
