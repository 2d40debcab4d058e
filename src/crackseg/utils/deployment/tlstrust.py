"""One way to make a TLS client context from "which CAs to trust" and "verify or not".

Used by the health checks (:mod:`~crackseg.utils.deployment.monitoring.checks.tls`, the
HTTPS checker's own context) and by the e-mail channel's STARTTLS/TLS, so that a CA file
and ``verify: false`` mean the same everywhere and a bad CA file reads the same error.

>>> trust_context(verify=False).check_hostname
False
"""

from __future__ import annotations

import ssl

from crackseg.utils.deployment.errors import ConfigError

__all__ = ["trust_context"]


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
