"""A durable outbox in SQLite, shared by the hub and the brand SDK.

An envelope is written here in the same transaction that accepts it; it is
published from here, and stays until the recipient's application receipt
arrives (``ack``). Attempts back off exponentially, so a recipient that never
answers costs little. Receivers deduplicate by envelope id, so re-publishing is
always safe (at-least-once on the wire, exactly-once in effect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hub.errors import BrokerError, FoyerError
from hub.protocol import now_ms

__all__ = ["Outbox", "OutboxItem", "Publisher", "pump"]

log = logging.getLogger(__name__)

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_at);
"""


@dataclass(frozen=True)
class OutboxItem:
    id: str
    peer: str
    topic: str
    payload: bytes
    attempts: int


class Outbox:
    """The ``outbox`` table of one SQLite connection (callers own transactions)."""

    def __init__(
        self, conn: sqlite3.Connection, *, first_retry_ms: int = 2000, max_retry_ms: int = 60_000
    ) -> None:
        self._conn = conn
        self._first_retry_ms = first_retry_ms
        self._max_retry_ms = max_retry_ms
        conn.executescript(OUTBOX_SCHEMA)

    def add(self, item_id: str, peer: str, topic: str, payload: bytes) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO outbox (id, peer, topic, payload, created_at) VALUES (?,?,?,?,?)",
            (item_id, peer, topic, payload, now_ms()),
        )

    def due(self, peers: set[str] | None = None, limit: int = 100) -> list[OutboxItem]:
        """Items whose next attempt is due, oldest first; only for ``peers`` when given.

        Filtering happens in SQL, so a long backlog for an unreachable peer never hides the
        items of a reachable one.
        """
        where, params = _peer_filter(peers)
        rows = self._conn.execute(
            "SELECT id, peer, topic, payload, attempts FROM outbox"  # noqa: S608 - placeholders only
            f" WHERE next_attempt_at <= ?{where} ORDER BY created_at, rowid LIMIT ?",
            (now_ms(), *params, limit),
        ).fetchall()
        return [OutboxItem(r["id"], r["peer"], r["topic"], bytes(r["payload"]), r["attempts"]) for r in rows]

    def attempted(self, item: OutboxItem) -> None:
        """Record a publish; the next try waits for a receipt first, with backoff."""
        delay = min(self._first_retry_ms * 2**item.attempts, self._max_retry_ms)
        self._conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
            (now_ms() + delay, item.id),
        )

    def retry_now(self, peer: str) -> None:
        """Make every item for ``peer`` due at once (it just came back online)."""
        self._conn.execute("UPDATE outbox SET next_attempt_at = 0 WHERE peer = ?", (peer,))

    def ack(self, item_id: str, peer: str) -> bool:
        """Drop an item ``peer`` acknowledged; False if it was not here, or was for someone else."""
        return (
            self._conn.execute("DELETE FROM outbox WHERE id = ? AND peer = ?", (item_id, peer)).rowcount > 0
        )

    def drop_peer(self, peer: str) -> int:
        return self._conn.execute("DELETE FROM outbox WHERE peer = ?", (peer,)).rowcount

    def pending(self, peer: str | None = None) -> int:
        if peer is None:
            row = self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
        else:
            row = self._conn.execute("SELECT COUNT(*) FROM outbox WHERE peer = ?", (peer,)).fetchone()
        return int(row[0])

    def next_due_in_ms(self, peers: set[str] | None = None) -> int | None:
        """Milliseconds until the next attempt for ``peers`` (all when None); None if nothing waits."""
        where, params = _peer_filter(peers)
        row = self._conn.execute(
            f"SELECT MIN(next_attempt_at) FROM outbox WHERE 1=1{where}",  # noqa: S608 - placeholders only
            params,
        ).fetchone()
        if row[0] is None:
            return None
        return max(0, int(row[0]) - now_ms())


def _peer_filter(peers: set[str] | None) -> tuple[str, tuple[str, ...]]:
    if peers is None:
        return "", ()
    return f" AND peer IN ({','.join('?' * len(peers))})", tuple(sorted(peers))


async def _publish_due(
    outbox: Outbox,
    link: Publisher,
    peers: Callable[[], set[str] | None],
    published: Callable[[OutboxItem], None],
    prepare: Callable[[OutboxItem], bytes],
) -> None:
    if not link.connected:
        return
    for item in outbox.due(peers()):
        try:
            wire = prepare(item)
        except FoyerError as err:  # e.g. no key pinned yet for the peer: it stays queued
            log.warning("outbox: %s cannot be sealed yet: %s", item.id, err)
            outbox.attempted(item)
            continue
        try:
            await link.publish(item.topic, wire)
        except BrokerError as err:
            log.warning("outbox: %s stays queued: %s", item.id, err)
            return
        outbox.attempted(item)
        published(item)


class Publisher(Protocol):
    @property
    def connected(self) -> bool: ...
    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None: ...


async def pump(
    outbox: Outbox,
    link: Publisher,
    wake: asyncio.Event,
    *,
    peers: Callable[[], set[str] | None],
    published: Callable[[OutboxItem], None],
    prepare: Callable[[OutboxItem], bytes] = lambda item: item.payload,
) -> None:
    """Publish due items for reachable ``peers`` forever; sleep until woken or the next item is due.

    The outbox keeps envelopes in clear (they never leave the home's disk that way);
    ``prepare`` seals and signs each one just before it is published.
    """
    while True:
        try:
            await _publish_due(outbox, link, peers, published, prepare)
            wait_ms = outbox.next_due_in_ms(peers())
        except Exception:  # e.g. a locked database: log, wait, try again; never die silently
            log.exception("outbox pass failed; retrying in a second")
            wait_ms = 1000
        timeout = 1.0 if wait_ms is None else min(max(wait_ms / 1000, 0.02), 1.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await wake.wait()
        wake.clear()
