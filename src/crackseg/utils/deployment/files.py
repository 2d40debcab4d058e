"""One way to replace a file: readers see the old content or the new, never half of it.

Used for every file the project writes for others to read (the JSON export, the silences
file, nginx's generated configuration, generated Prometheus rules). And the one way to read
a secret from a file (``token_file``, ``password_file``...: how Docker secrets, systemd's
``LoadCredential=`` and Kubernetes pass them).

>>> import tempfile, pathlib
>>> p = atomic_write(pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt", "hi\\n")
>>> p.read_text()
'hi\\n'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["MAX_SECRET_FILE_BYTES", "atomic_write", "read_secret_file", "secret_files"]


def atomic_write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` through a temporary file in the same
    directory, flushed to disk, then renamed over ``path``; the parent directory is made if
    missing. A failure leaves the old file untouched and no temporary file behind. Returns
    the path written (``~`` expanded)."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself survives a power cut only once the directory is on disk too.
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


#: Largest secret file read: a token or a URL, not a document.
MAX_SECRET_FILE_BYTES = 64 * 1024


def read_secret_file(path: str | os.PathLike[str]) -> str:
    """The secret in the file at ``path`` (UTF-8), without its trailing newline.

    Raises :class:`ValueError` saying why it cannot be read (missing, unreadable, too large,
    not UTF-8, empty); the message names the path, never the content.
    """
    p = Path(path).expanduser()
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {p}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{p} is larger than {MAX_SECRET_FILE_BYTES // 1024} KiB; is it a secret?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{p} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ValueError(f"{p} is empty")
    return text


def secret_files(
    spec: Mapping[str, Any], names: Iterable[str]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``spec`` with each ``<name>_file`` (for the given secret-bearing ``names``) replaced by
    ``<name>`` holding the file's secret; and the problems, as ``(key, what is wrong)``."""
    out = dict(spec)
    problems: list[tuple[str, str]] = []
    for name in names:
        key = f"{name}_file"
        if key not in out:
            continue
        path = out.pop(key)
        if out.get(name) is not None or out.get(f"{name}_env") is not None:
            problems.append((key, f"give one of {name}, {name}_env or {key}, not several"))
        elif not isinstance(path, str) or not path:
            problems.append((key, "must be the path of a file holding the secret"))
        else:
            try:
                out[name] = read_secret_file(path)
            except ValueError as exc:
                problems.append((key, str(exc)))
    return out, problems
