"""SQLite, the way every Foyer store uses it: WAL, one helper for atomic units of work."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic", "connect_sqlite"]

_savepoints = itertools.count(1)


def connect_sqlite(path: Path | str, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open a SQLite file in WAL mode.

    With WAL, ``synchronous=NORMAL`` survives a killed process (every commit is in
    the WAL before ``commit`` returns); ``FULL`` also survives a power cut, at the
    cost of an fsync per commit.
    """
    if synchronous.upper() not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous={synchronous!r}: expected NORMAL or FULL")
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


@contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[bool]:
    """One atomic unit of work: our own ``BEGIN IMMEDIATE`` transaction, or, inside the
    caller's, a savepoint of it. Yields whether this block owns the transaction."""
    if conn.in_transaction:
        name = f"foyer_sp{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield False
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield True
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
