"""Whether a store's path still names the file it writes.

SQLite keeps writing into a file unlinked under it (``rm h.db*`` while the service runs):
every later row, and the firing alert state, go into a file nobody can read and that is
gone at close. :class:`FileIdentity` remembers which file (device and inode) the path
named when the store opened it; :meth:`FileIdentity.problem` says when that changed.

>>> # identity = FileIdentity("history.db"); identity.problem()  -> None while it is the same
"""

from __future__ import annotations

import os

__all__ = ["FileIdentity"]


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class FileIdentity:
    """The file ``path`` names now, to compare with later (one ``stat()`` per check)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._opened = _identity(path)

    def problem(self) -> str | None:
        """Why ``path`` no longer names the file opened (deleted, or replaced by another
        file), with what to do; None while it does."""
        now = _identity(self.path)
        if now == self._opened:
            return None
        what = "deleted" if now is None else "replaced by another file"
        return (
            f"the history file {self.path} was {what} while the service runs: new history "
            "and alert state go to a file nobody can read; restart the service to recreate it"
        )
