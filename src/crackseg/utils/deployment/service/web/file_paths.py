"""Which files a deployment added through the API may name: its ``tls.ca_file``,
``tls.cert_file`` and ``tls.key_file`` must lie under a directory the operator listed in
``server.allowed_file_dirs`` (symbolic links resolved), and with none listed, file paths
are refused through the API altogether. A token holder could otherwise have the server read
any file it can (and learn from the errors whether it exists); the configuration file,
written by the operator, names any file.

The check runs on the request's JSON before the deployment's model is validated, so a path
outside those directories is never opened nor looked at, and its answer is the same whether
the file exists or not. Errors name the field and the setting, never a file's contents.

Private: :mod:`.api` calls :func:`refuse_unallowed_files` on ``POST /api/v1/deployments``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from crackseg.utils.deployment.service.web.problems import ApiError

__all__ = ["TLS_FILE_FIELDS", "allowed_dirs", "refuse_unallowed_files"]

#: The file paths a deployment's check names (under its ``tls`` key).
TLS_FILE_FIELDS = ("ca_file", "cert_file", "key_file")
_SETTING = "server.allowed_file_dirs"


def allowed_dirs(dirs: Iterable[str]) -> tuple[str, ...]:
    """``dirs`` as the check compares them: absolute, symbolic links resolved."""
    return tuple(os.path.realpath(os.path.expanduser(d)) for d in dirs)


def refuse_unallowed_files(body: Any, allowed: tuple[str, ...]) -> None:
    """ApiError 400 naming the first ``tls.*_file`` of ``body`` (a deployment's JSON) that
    lies outside ``allowed`` (from :func:`allowed_dirs`); a value that is not a string is
    left to the model's own validation."""
    tls = body.get("tls") if isinstance(body, dict) else None
    if not isinstance(tls, dict):
        return
    for name in TLS_FILE_FIELDS:
        path = tls.get(name)
        if not isinstance(path, str):
            continue
        field = f"tls.{name}"
        if not allowed:
            raise ApiError(
                400,
                f"file paths are refused through the API unless the server's configuration "
                f"lists the directories they may lie in ({_SETTING}); or add this deployment "
                f"in the configuration file",
                field,
            )
        if not os.path.isabs(path):
            raise ApiError(400, f"must be an absolute path under one of {_SETTING}", field)
        real = os.path.realpath(path)
        if not any(_under(real, d) for d in allowed):
            raise ApiError(
                400, f"must lie under one of {_SETTING} (symbolic links resolved)", field
            )


def _under(path: str, directory: str) -> bool:
    return path != directory and os.path.commonpath([path, directory]) == directory
