"""Alerts as e-mail over SMTP: STARTTLS, implicit TLS or plain; login; text and HTML parts."""

from __future__ import annotations

import functools
import html
import smtplib
import socket
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.deadline import SendDeadline
from crackseg.utils.deployment.delivery.handler_options import (
    Duration,
    HandlerOptions,
    secret_problems,
    secret_value,
)
from crackseg.utils.deployment.delivery.options import Facts, iso8601
from crackseg.utils.deployment.errors import ConfigError, NotifierError, require_positive
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.tlstrust import ContextCache, trust_context

__all__ = ["SECURITY_MODES", "EmailHandler", "EmailOptions"]

#: ``starttls``: plain connect then upgrade (port 587); ``tls``: TLS from the first byte
#: (port 465); ``none``: no encryption (a local relay only).
SECURITY_MODES = ("starttls", "tls", "none")


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class EmailOptions(HandlerOptions):
    """``{type: email, host, port, sender, recipients: [...], username, password |
    password_env, security: starttls|tls|none, tls_ca_file, tls_verify, timeout,
    subject_prefix}``; ``port`` defaults to 465 for ``tls``, else 587."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    sender: str = Field(min_length=1)
    recipients: Annotated[list[str], BeforeValidator(_listed), Field(min_length=1)]
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    tls_ca_file: str | None = None
    tls_verify: bool = True
    timeout: Duration = 10.0
    subject_prefix: str = ""

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        out += secret_problems("password", self.password, self.password_env, required=False)
        has_password = self.password is not None or self.password_env is not None
        out += _header_problems(self.sender, self.recipients, self.subject_prefix)
        if (self.username is None) != has_password:
            return out
        return [*out, ("password", "give both username and password, or neither")]


def _header_problems(
    sender: str, recipients: list[str], subject_prefix: str
) -> list[tuple[str, str]]:
    """Mail header values that would add headers (a line break: ``Bcc: ...``): refused on
    load, not by every send."""
    fields = [("sender", sender), ("subject_prefix", subject_prefix)]
    fields += [(f"recipients[{i}]", r) for i, r in enumerate(recipients)]
    return [(f, "must be one line without control characters") for f, v in fields
            if any(ord(c) < 32 or ord(c) == 127 for c in v)]  # fmt: skip


class EmailHandler(AlertHandler):
    """Sends one e-mail per alert, subject ``[FIRING] critical health_check_failed on api``.

    The password is used for ``LOGIN``/``PLAIN`` and nowhere else. Server answers 5xx and
    failed logins are permanent failures; 4xx answers and connection problems are retried.
    ``ssl_context``: the TLS client context, or a callable giving the one to use now (the
    configuration's ``tls_ca_file`` is read again when rewritten); None: the system's trust.

    >>> h = EmailHandler("smtp.example.com", 587, sender="monitor@example.com",
    ...                  recipients=["ops@example.com"], username="monitor", password="pw")
    >>> h.name
    'email:smtp.example.com:587'
    """

    kind = "email"

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        sender: str,
        recipients: list[str],
        username: str | None = None,
        password: str | None = None,
        security: str = "starttls",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        subject_prefix: str = "",
        send_resolved: bool = True,
        key: str | None = None,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ConfigError("security", f"must be one of {', '.join(SECURITY_MODES)}")
        if not recipients:
            raise ConfigError("recipients", "give at least one address")
        if (username is None) != (password is None):
            raise ConfigError("password", "give both username and password, or neither")
        for field, problem in _header_problems(sender, list(recipients), subject_prefix):
            raise ConfigError(field, problem)
        require_positive("timeout", timeout)
        self.host, self.port = host, int(port)
        self.sender, self.recipients = sender, list(recipients)
        self.username, self._password = username, password
        self.security, self.timeout = security, timeout
        self._ssl = ssl_context
        self.subject_prefix = subject_prefix
        self.send_resolved, self.key = send_resolved, key

    Options = EmailOptions

    @classmethod
    def from_options(cls, opts: EmailOptions) -> EmailHandler:
        # Asked per message, so a rotated CA file is trusted by the next one; asked once now
        # so that a file that cannot be used is refused with the configuration.
        context = functools.partial(_trusted, opts.tls_ca_file, opts.tls_verify)
        context()
        return cls(
            opts.host, opts.port or (465 if opts.security == "tls" else 587),
            sender=opts.sender, recipients=list(opts.recipients), username=opts.username,
            password=secret_value(opts.password, opts.password_env), security=opts.security,
            timeout=opts.timeout, ssl_context=context, subject_prefix=opts.subject_prefix,
        )  # fmt: skip

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def name(self) -> str:
        return f"email:{self.host}:{self.port}"

    def secrets(self) -> tuple[str, ...]:
        return (self._password,) if self._password else ()

    def message(
        self, alert_type: str, metadata: DeploymentMetadata, kwargs: dict[str, Any]
    ) -> EmailMessage:
        """The e-mail for one alert: plain text first, HTML as the alternative."""
        f = Facts(alert_type, metadata.deployment_id, kwargs)
        rows: list[tuple[str, str]] = [
            ("Alert", alert_type),
            ("State", f.state),
            ("Severity", f.severity),
            ("Deployment", f.deployment_id),
        ]
        if f.measure():
            rows.append(("Measured", str(f.measure())))
        if f.message:
            rows.append(("Message", f.message))
        if f.started_at:
            rows.append(("Since", iso8601(f.started_at)))
        rows.append(("At", iso8601(f.timestamp)))
        if metadata.version:
            rows.append(("Version", metadata.version))
        if f.event_id:
            rows.append(("Event", str(f.event_id)))
        msg = EmailMessage()
        msg["Subject"] = f"{self.subject_prefix}{f.headline()}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(f.timestamp, localtime=False)
        msg["Message-ID"] = make_msgid(domain="crackseg-monitor")
        if f.event_id:
            msg["X-CrackSeg-Event-Id"] = str(f.event_id)
        width = max(len(k) for k, _ in rows)
        msg.set_content("\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in rows) + "\n")
        color = "#2eb886" if f.resolved else "#d00000" if f.severity == "critical" else "#f2a900"
        cells = "".join(
            f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        msg.add_alternative(
            f"<html><body><h2 style='color:{color}'>{html.escape(f.headline())}</h2>"
            f"<table cellpadding='4'>{cells}</table></body></html>",
            subtype="html",
        )
        return msg

    def _dialogue(self, msg: EmailMessage, context: ssl.SSLContext, deadline: SendDeadline) -> None:
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = _WatchedSMTPSSL(
                deadline, self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            smtp = _WatchedSMTP(deadline, self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.security == "starttls":
                smtp.ehlo()
                smtp.starttls(context=context)
                if smtp.sock is not None:
                    deadline.watch(smtp.sock)  # the TLS socket replaced the plain one
                smtp.ehlo()
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password)
            smtp.send_message(msg)

    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        msg = self.message(alert_type, metadata, kwargs)
        context = self._ssl() if callable(self._ssl) else (self._ssl or trust_context())
        where = f"smtp at {self.host}:{self.port}"
        # One deadline for the whole dialogue: a server dripping ``250-`` lines never lets a
        # single read time out.
        deadline = SendDeadline(2 * self.timeout)
        try:
            try:
                with deadline:
                    self._dialogue(msg, context, deadline)
            except (smtplib.SMTPException, OSError, ValueError):
                if deadline.expired:
                    raise NotifierError(f"{where} timed out after {self.timeout:g} s") from None
                raise
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifierError(
                f"{where} refused the login ({exc.smtp_code})", permanent=True
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({c for c, _ in exc.recipients.values()})
            permanent = all(c >= 500 for c in codes)
            raise NotifierError(
                f"{where} refused recipients {codes}", permanent=permanent
            ) from None
        except smtplib.SMTPResponseException as exc:
            reply = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise NotifierError(
                f"{where} answered {exc.smtp_code}: {reply[:200]}", permanent=exc.smtp_code >= 500
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise NotifierError(f"{where}: {exc}", permanent=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise NotifierError(
                f"{where}: certificate not trusted ({exc.verify_message})", permanent=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifierError(f"{where} failed: {type(exc).__name__}: {exc}") from None


class _Watched:
    """Cuts an SMTP client's socket at ``deadline`` (the greeting is read in the
    constructor, so the socket is watched from the moment it is made)."""

    def __init__(self, deadline: SendDeadline, *args: Any, **kwargs: Any) -> None:
        self._deadline = deadline
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._deadline.watch(sock)
        return sock


class _WatchedSMTP(_Watched, smtplib.SMTP):
    """SMTP whose socket is cut at ``deadline``."""


class _WatchedSMTPSSL(_Watched, smtplib.SMTP_SSL):
    """SMTP over TLS whose socket (the wrapped one) is cut at ``deadline``."""


_contexts = ContextCache(maxsize=64)


def _trusted(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """The client context trusting ``ca_file`` now (made again when the file is rewritten)."""
    return _contexts.get(
        (ca_file, verify),
        (ca_file,),
        lambda: trust_context(ca_file, verify=verify, field="tls_ca_file"),
    )
