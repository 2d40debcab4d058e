"""One way to replace a file: readers see the old content or the new, never half of it.

Used for every file the project writes for others to read (the JSON export, the silences
file, nginx's generated configuration, generated Prometheus rules).

>>> import tempfile, pathlib
>>> p = atomic_write(pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt", "hi\\n")
>>> p.read_text()
'hi\\n'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


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
