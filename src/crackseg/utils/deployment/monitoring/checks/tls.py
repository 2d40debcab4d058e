"""Per-deployment TLS: what a check trusts, what it presents, and when its certificate ends.

:class:`TlsOptions` is the ``tls:`` key of a deployment (library, YAML file and API alike):
``verify`` (default true; false accepts any certificate, for a self-signed staging host),
``ca_file`` (PEM of the private CA to trust instead of the system's), and ``cert_file``
with ``key_file`` (the client certificate an mTLS server requires; ``key_file`` may be
left out when the key is in ``cert_file``). Files are read when the context is first
made, and again when they are rewritten (a rotated CA or client certificate is used by the
next check, see :mod:`~crackseg.utils.deployment.tlstrust`); a file that cannot be read is
a :class:`~crackseg.utils.deployment.errors.ConfigError` naming the field.

:func:`earliest_expiry` reads the chain the server sent (verified, or as sent when
``verify`` is off) and answers the earliest ``notAfter`` as a UNIX time: the date
blackbox_exporter exports as ``probe_ssl_earliest_cert_expiry``.

>>> TlsOptions(verify=False).verify
False
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.tlstrust import ContextCache, trust_context

__all__ = ["TlsOptions", "client_context", "earliest_expiry", "handshake_expiry"]

_Path = Annotated[str, Strict(), Field(min_length=1, max_length=4096)]


class TlsOptions(BaseModel):
    """How one deployment's checks speak TLS (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verify: Annotated[bool, Strict()] = Field(
        True, description="verify the server's certificate and name (false: accept any)"
    )
    ca_file: _Path | None = Field(None, description="PEM file of the CA(s) to trust")
    cert_file: _Path | None = Field(None, description="client certificate (PEM) for mTLS")
    key_file: _Path | None = Field(None, description="client key (PEM); default: in cert_file")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, path: str | None) -> str | None:
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"no such file {path!r}")
        return path

    @model_validator(mode="after")
    def _pair(self) -> TlsOptions:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate it belongs to)")
        return self


_SYSTEM = TlsOptions.model_validate({})  # the system's trust, verification on
_contexts = ContextCache()


def client_context(options: TlsOptions | None, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The client context for ``options`` (None: the system's trust, verification on),
    offering ``alpn`` protocols: one per distinct arguments, made again when its CA,
    certificate or key file is rewritten (noticed within :data:`~crackseg.utils.deployment.
    tlstrust.RESTAT_S` seconds). ConfigError names a file that cannot be used."""
    opts = options if options is not None else _SYSTEM
    files = (opts.ca_file, opts.cert_file, opts.key_file)
    return _contexts.get((opts, alpn), files, lambda: _make(opts, alpn))


def _make(opts: TlsOptions, alpn: tuple[str, ...]) -> ssl.SSLContext:
    ctx = trust_context(opts.ca_file, verify=opts.verify, field="tls.ca_file")
    if opts.cert_file is not None:
        try:
            ctx.load_cert_chain(opts.cert_file, opts.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "tls.cert_file", f"cannot load the client certificate and key: {exc}"
            ) from None
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def earliest_expiry(ssl_object: Any) -> float | None:
    """The earliest ``notAfter`` (UNIX seconds) of the chain on ``ssl_object`` (an
    ``ssl.SSLObject`` or ``ssl.SSLSocket`` after its handshake); None when none is seen."""
    chain: list[Any] = []
    for source in (ssl_object, getattr(ssl_object, "_sslobj", None)):
        if source is None:
            continue
        # Public on Python 3.13+, on the private object before; verified first, since
        # with verify off only the chain as sent exists.
        for name in ("get_verified_chain", "get_unverified_chain"):
            fn = getattr(source, name, None)
            if fn is None:
                continue
            try:
                chain = list(fn() or [])
            except (ssl.SSLError, ValueError):
                chain = []
            if chain:
                break
        if chain:
            break
    ends: list[float] = []
    for cert in chain:
        info = cert.get_info() if hasattr(cert, "get_info") else None
        not_after = info.get("notAfter") if isinstance(info, dict) else None
        if isinstance(not_after, str):
            try:
                ends.append(float(ssl.cert_time_to_seconds(not_after)))
            except ValueError:
                continue
    if not ends:
        # Older runtimes: the leaf alone, when it was verified (decoded only then).
        try:
            leaf = ssl_object.getpeercert()
        except (ssl.SSLError, ValueError, AttributeError):
            leaf = None
        if leaf and isinstance(leaf.get("notAfter"), str):
            ends.append(float(ssl.cert_time_to_seconds(leaf["notAfter"])))
    return min(ends) if ends else None


async def handshake_expiry(
    host: str, port: int, ctx: ssl.SSLContext, timeout: float
) -> float | None:
    """Connect, shake hands with ``ctx`` and answer :func:`earliest_expiry`; for checks whose
    library hides its TLS session (gRPC). Raises what the connection raises."""
    async with asyncio.timeout(timeout):
        _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    try:
        return earliest_expiry(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
