"""The TLS context of HTTPS checks: one per checker, made on first use."""

from __future__ import annotations

import ssl

__all__ = ["client_context"]


def client_context(verify: bool) -> ssl.SSLContext:
    """The system's defaults (certificate and host name checked), or no checking at all."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
