"""systemd's readiness protocol (``Type=notify``), in a few lines and no dependency.

When systemd starts the service it sets ``NOTIFY_SOCKET`` to a UNIX datagram socket (a path,
or ``@name`` in the abstract namespace); :func:`notify` sends it ``READY=1`` once the service
serves, ``RELOADING=1`` (with ``MONOTONIC_USEC``) while SIGHUP re-reads the file,
``STOPPING=1`` on the way out. Without ``NOTIFY_SOCKET`` it does nothing.

>>> notify("READY=1", environ={})
False
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["notify", "reloading"]

logger = logging.getLogger("crackseg.utils.deployment.service")


def notify(*fields: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``fields`` (``"READY=1"``...) to systemd; True if sent. Never raises: a manager
    that does not listen must not stop the service."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # the abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as exc:
        logger.warning("cannot notify the service manager at %s: %s", env["NOTIFY_SOCKET"], exc)
        return False
    return True


def reloading() -> bool:
    """``RELOADING=1`` with the monotonic time systemd requires beside it."""
    return notify(
        "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
    )
