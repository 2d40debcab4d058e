"""``crackseg-monitor silence add|list|remove``: silences on a running service, via its API."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer
from rich.table import Table

from crackseg.utils.deployment.service.cli.support import (
    ConfigOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    api_list,
    api_request,
    fail,
    out,
    print_json,
    service_address,
    when,
)
from crackseg.utils.deployment.service.config import parse_duration

__all__ = ["silence_add", "silence_app", "silence_list", "silence_remove"]

silence_app = typer.Typer(help="Silence alerts on a running service (through its API).")


@silence_app.command("add")
def silence_add(
    duration: Annotated[str, typer.Option(help="How long: 30m, 2h, 1d.")],
    deployment: Annotated[str | None, typer.Option(help="Deployment to silence.")] = None,
    alert_type: Annotated[str | None, typer.Option(help="Alert type to silence.")] = None,
    comment: Annotated[str, typer.Option(help="Why (shown in the API).")] = "",
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Silence a deployment's alerts, one alert type, or both, for a while."""
    if deployment is None and alert_type is None:
        fail("give --deployment, --alert-type or both")
    try:
        seconds = float(parse_duration(duration))
    except ValueError as exc:
        fail(f"--duration: {exc}")
    base, tok = service_address(config, url, token)
    body = {"duration_seconds": seconds, "comment": comment, "created_by": "cli"}
    body.update({k: v for k, v in (("deployment_id", deployment), ("alert_type", alert_type)) if v})
    s = api_request(base, "/api/v1/silences", token=tok, method="POST", body=body)
    out.print(f"silenced: {s.get('id', s.get('silence_id', '?'))}", markup=False)


@silence_app.command("list")
def silence_list(
    config: ConfigOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """The silences in force."""
    base, tok = service_address(config, url, token)
    rows = api_list(base, "/api/v1/silences", "silences", token=tok)
    if as_json:
        print_json(rows)
        return
    table = Table(title="Silences")
    for col in ("id", "deployment", "alert type", "ends", "comment"):
        table.add_column(col)
    for s in rows:
        ends = s.get("ends_at") or s.get("expires_at")
        table.add_row(
            str(s.get("id", s.get("silence_id", "?"))), str(s.get("deployment_id") or "*"),
            str(s.get("alert_type") or "*"), when(ends) if isinstance(ends, float | int) else str(ends),
            str(s.get("comment") or ""),
        )  # fmt: skip
    out.print(table)


@silence_app.command("remove")
def silence_remove(
    silence_id: Annotated[str, typer.Argument(help="Id from `silence list`.")],
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """End a silence now."""
    base, tok = service_address(config, url, token)
    api_request(base, f"/api/v1/silences/{quote(silence_id, safe='')}", token=tok, method="DELETE")
    out.print(f"removed silence {silence_id}", markup=False)
