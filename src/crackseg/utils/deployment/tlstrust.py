"""One way to make a TLS client context from "which CAs to trust" and "verify or not", and
one cache that notices when the files behind a context are rewritten.

Used by the health checks (:mod:`~crackseg.utils.deployment.monitoring.checks.tls`, the
HTTPS checker's own context) and by the e-mail channel's STARTTLS/TLS, so that a CA file
and ``verify: false`` mean the same everywhere and a bad CA file reads the same error.

A CA, client certificate or key file is rotated in place (cert-manager, ``certbot renew``:
a new file renamed over the old one): :class:`ContextCache` keys each context on its files'
``(path, inode, mtime_ns, size)``, looked at again at most every :data:`RESTAT_S` seconds,
so the next check after that uses the new files. A rewritten file that cannot be loaded
(a certificate written before its key) keeps the last good context until it can.

>>> trust_context(verify=False).check_hostname
False
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from crackseg.utils.deployment.errors import ConfigError

__all__ = ["RESTAT_S", "ContextCache", "file_stamps", "trust_context"]

logger = logging.getLogger(__name__)

#: Longest time (seconds) a rewritten certificate, key or CA file goes unnoticed.
RESTAT_S = 2.0

_Stamp = tuple[str, int, int, int] | tuple[str, None]


def trust_context(
    ca_file: str | None = None, *, verify: bool = True, field: str = "ca_file"
) -> ssl.SSLContext:
    """A new client context trusting ``ca_file`` (PEM; None: the system's CAs). With
    ``verify=False`` neither the certificate nor the host name is checked. A CA file that
    cannot be loaded is a :class:`ConfigError` naming ``field``."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            field, f"cannot load CA file {ca_file!r} ({exc}); give a PEM file"
        ) from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def file_stamps(paths: tuple[str | None, ...]) -> tuple[_Stamp, ...]:
    """What tells a rewritten file from the one read before: ``(path, inode, mtime_ns,
    size)`` per given path (``(path, None)`` for one that cannot be read now)."""
    stamps: list[_Stamp] = []
    for path in paths:
        if path is None:
            continue
        try:
            st = os.stat(path)
        except OSError:
            stamps.append((path, None))
        else:
            stamps.append((path, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


class ContextCache:
    """Contexts made once per key and remade when their files change (thread-safe, at most
    ``maxsize`` keys, least recently used dropped first).

    >>> cache = ContextCache()
    >>> a = cache.get("k", (), lambda: trust_context(verify=False))
    >>> a is cache.get("k", (), lambda: trust_context())
    True
    """

    def __init__(
        self,
        maxsize: int = 256,
        restat_s: float = RESTAT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._maxsize = maxsize
        self._restat_s = restat_s
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (when the files were last looked at, their stamps, the context)
        self._entries: OrderedDict[Hashable, tuple[float, tuple[_Stamp, ...], ssl.SSLContext]] = (
            OrderedDict()
        )

    def get(
        self, key: Hashable, files: tuple[str | None, ...], make: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        """The context for ``key``, made by ``make`` from ``files``: the cached one while
        the files are unchanged. Raises what ``make`` raises when there is no good one."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                if now - entry[0] < self._restat_s:
                    return entry[2]
        stamps = file_stamps(files)
        if entry is not None and stamps == entry[1]:
            self._store(key, (now, stamps, entry[2]))
            return entry[2]
        try:
            ctx = make()
        except (ConfigError, OSError, ssl.SSLError) as exc:
            if entry is None:
                raise
            # Mid-rotation (a certificate renamed in before its key): keep the last good
            # context, and look again at the next re-stat.
            logger.warning("TLS files changed but cannot be loaded yet, keeping the last "
                           "good ones: %s", exc)  # fmt: skip
            self._store(key, (now, entry[1], entry[2]))
            return entry[2]
        self._store(key, (now, stamps, ctx))
        return ctx

    def _store(
        self, key: Hashable, entry: tuple[float, tuple[_Stamp, ...], ssl.SSLContext]
    ) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
