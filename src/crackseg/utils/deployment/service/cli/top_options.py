"""The options of ``crackseg-monitor`` itself, before any command: ``--version`` and
``--log-format`` (``text``, or ``json``: one JSON object per line; also
``CRACKSEG_LOG_FORMAT``, as the systemd units set it)."""

from __future__ import annotations

from typing import Annotated

import typer

from crackseg.utils.deployment.service.cli.support import LOG_FORMAT, out
from crackseg.utils.deployment.service.logs import LogFormat
from crackseg.utils.deployment.version import VERSION

__all__ = ["top_options"]


def _print_version(value: bool) -> None:
    if value:
        out.print(f"crackseg-monitor {VERSION}", markup=False)
        raise typer.Exit()


def top_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            envvar="CRACKSEG_LOG_FORMAT",
            help="text, or json: one JSON object per line (time, level, logger, message,"
            " deployment_id and alert_type where known).",
        ),
    ] = "text",
) -> None:
    """Monitor deployments' health, run the monitoring service, and drive safe rollouts."""
    LOG_FORMAT[0] = log_format
