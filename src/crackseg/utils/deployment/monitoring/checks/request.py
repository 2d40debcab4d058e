"""What an HTTP check sends, and where: its settings, parsed targets, TLS context.

The default checker's request options live here; a check URL is parsed once into its
complete request (:mod:`._target`) and cached, bounded. A deployment whose check is more
than a plain GET (:class:`~.plan.CheckPlan`: method, headers, body, TLS options,
conditions) gets a policy of its own from :meth:`RequestPolicy.for_plan`.
"""

from __future__ import annotations

import ssl

from crackseg.utils.deployment.errors import ConfigError, require_positive
from crackseg.utils.deployment.monitoring.checks._response import WithHeaders
from crackseg.utils.deployment.monitoring.checks._target import Target, parse_target
from crackseg.utils.deployment.monitoring.checks.base import MAX_BODY_BYTES
from crackseg.utils.deployment.monitoring.checks.plan import CheckPlan
from crackseg.utils.deployment.monitoring.checks.tls import TlsOptions
from crackseg.utils.deployment.monitoring.checks.tls import client_context as plan_context
from crackseg.utils.deployment.redact import is_secret_key
from crackseg.utils.deployment.tlstrust import trust_context

__all__ = ["RequestPolicy"]

# ~450 B each. Above the largest fleet one checker serves (the monitor cycles through every
# deployment's URL each round, so a smaller cache would miss on every check), bounded still.
_MAX_CACHED_TARGETS = 250_000
#: Never sent to another origin after a redirect (with every configured header whose
#: name :func:`~crackseg.utils.deployment.redact.is_secret_key` calls secret); a
#: configured Host belongs to the first origin too.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "host"})


class RequestPolicy:
    """How one checker's requests are made: headers, redirects, body bound, TLS.

    >>> policy = RequestPolicy(headers={"X-Probe": "1"})
    >>> policy.target("http://127.0.0.1:8080/health").port
    8080
    """

    def __init__(
        self,
        *,
        follow_redirects: bool = False,
        max_redirects: int = 5,
        max_body_bytes: int = MAX_BODY_BYTES,
        headers: dict[str, str] | None = None,
        verify_tls: bool = True,
    ) -> None:
        require_positive("max_redirects", max_redirects, allow_zero=True)
        require_positive("max_body_bytes", max_body_bytes)
        self.follow_redirects = follow_redirects
        self.max_redirects = int(max_redirects)
        self.max_body_bytes = int(max_body_bytes)
        self.verify_tls = verify_tls
        self.headers: dict[str, str] = dict(headers or {})
        for name, value in self.headers.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise ConfigError(f"headers[{name!r}]", "must not contain CR, LF or NUL")
        self._targets: dict[tuple[str, bool], Target | str] = {}
        self._tls: ssl.SSLContext | None = None
        #: The deployment's check this policy sends and judges (None: the checker's GET).
        self.plan: CheckPlan | None = None
        self._own_origin: tuple[bool, str, int] | None = None
        self._elsewhere: ssl.SSLContext | None = None  # for other origins than the plan's
        self._plan_tls: TlsOptions | None = None  # the plan's own TLS files, when it has some
        #: What ``max_body_bytes`` is passed as: asking for every header when needed.
        self.body_bound: int = self.max_body_bytes

    def for_plan(self, plan: CheckPlan) -> RequestPolicy:
        """A policy for one deployment's ``plan``: its method, body and headers (over this
        checker's), its TLS options, and its conditions to judge the answer."""
        policy = RequestPolicy(
            follow_redirects=self.follow_redirects,
            max_redirects=self.max_redirects,
            max_body_bytes=self.max_body_bytes,
            headers={**self.headers, **dict(plan.headers)},
            verify_tls=self.verify_tls,
        )
        policy.plan = plan
        # One context per distinct options: connections are pooled per context. Made now so
        # that a file that cannot be used is refused when the deployment is added.
        policy._tls = plan_context(plan.tls) if plan.tls is not None else self._context()
        policy._plan_tls = plan.tls
        if plan.tls is not None:
            # A client certificate and a private CA are for the configured origin only: a
            # redirect elsewhere gets the checker's own context (as credentials stay behind).
            first = policy.target(plan.url)
            if isinstance(first, Target):
                policy._own_origin = first.origin
                policy._elsewhere = self._context()
        if any("HEADERS" in c.placeholders for c in (*plan.conditions, *plan.degraded_when)):
            policy.body_bound = WithHeaders(self.max_body_bytes)
        return policy

    def target(self, url: str, cross_origin: bool = False) -> Target | str:
        """Parse and cache a URL; a str is the message for an unusable one.

        ``cross_origin`` leaves out the configured credentials (and a URL's own
        ``user:password@`` is that URL's, so it stays).
        """
        key = (url, cross_origin)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _MAX_CACHED_TARGETS:
                self._targets.clear()
            headers = self.headers
            if cross_origin:
                headers = {
                    k: v
                    for k, v in headers.items()
                    if k.lower() not in _CREDENTIAL_HEADERS and not is_secret_key(k)
                }
            plan = self.plan
            if plan is None or cross_origin:
                # A body may hold credentials as headers do: another origin gets a GET.
                target = parse_target(url, headers)
            else:
                # A redirect within the origin repeats the method and body (as 307/308 ask;
                # a health check that POSTs means it).
                target = parse_target(url, headers, plan.method, plan.body, plan.content_type)
            self._targets[key] = target
        return target

    def tls(self, target: Target) -> ssl.SSLContext | None:
        """The TLS context for ``target``, None for plain HTTP."""
        if not target.https:
            return None
        if self._elsewhere is not None and target.origin != self._own_origin:
            return self._elsewhere
        if self._plan_tls is not None:
            # Asked per check: a rotated CA or client certificate gives a new context (and
            # so a new pool: no connection made with the old files is reused).
            return plan_context(self._plan_tls)
        return self._tls or self._context()

    def _context(self) -> ssl.SSLContext:
        ctx = self._tls
        if ctx is None:
            ctx = self._tls = trust_context(verify=self.verify_tls)
        return ctx
