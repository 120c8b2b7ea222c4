"""The hub's SQLite store (WAL): brands, opt-ins, conversations, messages, the outbox.

Every change a household client can see bumps the row's ``seq``, a counter
that only grows; a client that reconnects asks for ``seq > last_seen`` and
misses nothing. Message ids are primary keys, so a redelivered envelope is
recognised and stored once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

from hub.crypto import PublicKeys, ReplayGuard
from hub.devices import Devices
from hub.errors import UnknownConversation
from hub.outbox import Outbox
from hub.protocol import Manifest, new_id, now_ms
from hub.sqlite import atomic, connect_sqlite

__all__ = ["BrandRow", "MessageRow", "Store"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS brands (
    id TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    opted_in INTEGER NOT NULL DEFAULT 0,
    opted_at INTEGER,
    online INTEGER NOT NULL DEFAULT 0,
    status_at INTEGER,
    pinned_keys TEXT,                           -- the brand's public keys, pinned at opt-in
    pending_keys TEXT                           -- new keys it announced, awaiting approval
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    brand_id TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'chat',          -- chat | notification | idea
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
    brand_id TEXT NOT NULL,
    rating_bot INTEGER,
    rating_human INTEGER,
    comment TEXT,
    created_at INTEGER NOT NULL,
    shared INTEGER NOT NULL DEFAULT 0          -- sent to the brand (the household allowed it)
);
CREATE INDEX IF NOT EXISTS conversations_brand ON conversations(brand_id, updated_at);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    brand_id TEXT NOT NULL,
    direction TEXT NOT NULL,                    -- out (home -> brand) | in (brand -> home)
    type TEXT NOT NULL,                         -- message | reply | notification
    text TEXT NOT NULL,
    lang TEXT NOT NULL,
    author_kind TEXT NOT NULL,                  -- member | bot | human
    author_name TEXT NOT NULL,
    status TEXT NOT NULL,                       -- queued | sent | delivered | received
    ref TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation_id, created_at);
"""

_MESSAGE_COLUMNS = (
    "id, seq, conversation_id, brand_id, direction, type, text, lang, author_kind,"
    " author_name, status, ref, extra, created_at, updated_at"
)


@dataclass(frozen=True)
class MessageRow:
    id: str
    seq: int
    conversation_id: str
    brand_id: str
    direction: str
    type: str
    text: str
    lang: str
    author_kind: str
    author_name: str
    status: str
    ref: str | None
    extra: dict[str, Any]
    created_at: int
    updated_at: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> MessageRow:
        values = dict(row)
        values["extra"] = json.loads(values["extra"])
        return cls(**values)


@dataclass(frozen=True)
class BrandRow:
    manifest: Manifest
    opted_in: bool
    opted_at: int | None
    online: bool
    pinned: PublicKeys | None = None
    pending: PublicKeys | None = None
    share_satisfaction: bool = False

    @property
    def id(self) -> str:
        return self.manifest.id


class Store:
    """One SQLite file; methods are small transactions. Use as ``with Store(path) as store``."""

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._conn = connect_sqlite(path, synchronous=synchronous)
        self._conn.executescript(SCHEMA)
        # Columns added after the first release: databases made before get them here.
        self._add_columns(
            "brands",
            {
                "pinned_keys": "TEXT",
                "pending_keys": "TEXT",
                "share_satisfaction": "INTEGER NOT NULL DEFAULT 0",
            },
        )
        self._add_columns(
            "conversations",
            {
                "state": "TEXT NOT NULL DEFAULT 'bot'",  # bot | waiting_human | human | closed
                "human_requested_at": "INTEGER",
                "human_joined_at": "INTEGER",
                "first_reply_at": "INTEGER",
                "closed_at": "INTEGER",
                "closed_by": "TEXT",
                "had_bot": "INTEGER NOT NULL DEFAULT 0",
                "had_human": "INTEGER NOT NULL DEFAULT 0",
            },
        )
        self.replay = ReplayGuard(self._conn)
        self.outbox = Outbox(self._conn)
        self.devices = Devices(self._conn)
        self._brands: dict[str, BrandRow] = {}
        self._load_brands()
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()
        self._seq = int(row[0])

    def _add_columns(self, table: str, columns: dict[str, str]) -> None:
        present = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, for the modules that keep their own tables in this file (consents, ledger)."""
        return self._conn

    def erase_brand(self, brand_id: str) -> int:
        """Delete every conversation, message, rating and outbox entry of ``brand_id``."""
        erased = self._conn.execute("DELETE FROM messages WHERE brand_id = ?", (brand_id,)).rowcount
        self._conn.execute("DELETE FROM ratings WHERE brand_id = ?", (brand_id,))
        self._conn.execute("DELETE FROM conversations WHERE brand_id = ?", (brand_id,))
        self._conn.execute("DELETE FROM outbox WHERE peer = ?", (brand_id,))
        return int(erased)

    def export(self) -> dict[str, Any]:
        """Everything of the household's own tables, as plain JSON-able rows."""
        tables = ("conversations", "messages", "ratings")
        return {
            table: [dict(r) for r in self._conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]  # noqa: S608
            for table in tables
        }

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit; inside another one it becomes a savepoint of it."""
        try:
            with atomic(self._conn):
                yield self._conn
        except BaseException:
            self._load_brands()  # the in-memory brands follow what was rolled back
            raise

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @property
    def last_seq(self) -> int:
        return self._seq

    # --- meta ------------------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def meta_items(self, prefix: str) -> list[tuple[str, str]]:
        rows = self._conn.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def delete_meta(self, key: str) -> None:
        self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- brands ----------------------------------------------------------------------------

    # Brands are read on every send and every incoming envelope: they are kept in memory,
    # parsed once, and reloaded from SQLite after each change (or a rolled-back transaction).

    def _load_brands(self) -> None:
        rows = self._conn.execute("SELECT * FROM brands ORDER BY id").fetchall()
        self._brands = {r["id"]: self._brand(r) for r in rows}

    def _reload_brand(self, brand_id: str) -> None:
        row = self._conn.execute("SELECT * FROM brands WHERE id = ?", (brand_id,)).fetchone()
        if row is None:
            self._brands.pop(brand_id, None)
        else:
            self._brands[brand_id] = self._brand(row)

    def upsert_manifest(self, manifest: Manifest) -> None:
        self._conn.execute(
            "INSERT INTO brands (id, manifest) VALUES (?, ?)"
            " ON CONFLICT(id) DO UPDATE SET manifest = excluded.manifest",
            (manifest.id, manifest.model_dump_json()),
        )
        self._reload_brand(manifest.id)

    def brands(self) -> list[BrandRow]:
        return [self._brands[k] for k in sorted(self._brands)]

    def brand(self, brand_id: str) -> BrandRow | None:
        return self._brands.get(brand_id)

    def brand_ids(self, *, opted_in: bool | None = None, online: bool | None = None) -> set[str]:
        return {
            b.id
            for b in self._brands.values()
            if (opted_in is None or b.opted_in == opted_in) and (online is None or b.online == online)
        }

    @staticmethod
    def _brand(row: sqlite3.Row) -> BrandRow:
        return BrandRow(
            manifest=Manifest.model_validate_json(row["manifest"]),
            opted_in=bool(row["opted_in"]),
            opted_at=row["opted_at"],
            online=bool(row["online"]),
            pinned=PublicKeys.from_dict(json.loads(row["pinned_keys"])) if row["pinned_keys"] else None,
            pending=PublicKeys.from_dict(json.loads(row["pending_keys"])) if row["pending_keys"] else None,
            share_satisfaction=bool(row["share_satisfaction"]),
        )

    def set_keys(self, brand_id: str, *, pinned: PublicKeys | None, pending: PublicKeys | None) -> None:
        self._conn.execute(
            "UPDATE brands SET pinned_keys = ?, pending_keys = ? WHERE id = ?",
            (
                json.dumps(pinned.as_dict()) if pinned else None,
                json.dumps(pending.as_dict()) if pending else None,
                brand_id,
            ),
        )
        self._reload_brand(brand_id)

    def set_opt_in(self, brand_id: str, opted_in: bool) -> None:
        self._conn.execute(
            "UPDATE brands SET opted_in = ?, opted_at = ? WHERE id = ?",
            (int(opted_in), now_ms() if opted_in else None, brand_id),
        )
        self._reload_brand(brand_id)

    def set_online(self, brand_id: str, online: bool) -> None:
        self._conn.execute(
            "UPDATE brands SET online = ?, status_at = ? WHERE id = ?",
            (int(online), now_ms(), brand_id),
        )
        self._reload_brand(brand_id)

    # --- conversations and messages --------------------------------------------------------

    def create_conversation(
        self, brand_id: str, *, kind: str = "chat", conversation_id: str | None = None
    ) -> str:
        conversation_id = conversation_id or new_id()
        now = now_ms()
        self._conn.execute(
            "INSERT OR IGNORE INTO conversations (id, brand_id, kind, created_at, updated_at)"
            " VALUES (?,?,?,?,?)",
            (conversation_id, brand_id, kind, now, now),
        )
        return conversation_id

    def conversation_brand(self, conversation_id: str) -> str:
        row = self._conn.execute(
            "SELECT brand_id FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise UnknownConversation(f"conversation {conversation_id!r} does not exist on this hub")
        return str(row[0])

    def conversation_state(self, conversation_id: str) -> str:
        """``bot``, ``waiting_human``, ``human`` or ``closed``; ``bot`` for one not started yet."""
        row = self._conn.execute(
            "SELECT state FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        return str(row[0]) if row else "bot"

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise UnknownConversation(f"conversation {conversation_id!r} does not exist on this hub")
        return dict(row)

    _CONVERSATION_FIELDS = frozenset(
        {
            "state",
            "human_requested_at",
            "human_joined_at",
            "first_reply_at",
            "closed_at",
            "closed_by",
            "had_bot",
            "had_human",
        }
    )

    def update_conversation(self, conversation_id: str, **fields: Any) -> None:
        unknown = set(fields) - self._CONVERSATION_FIELDS
        if unknown:
            raise ValueError(f"not conversation fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._conn.execute(
            f"UPDATE conversations SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608 - names checked
            (*fields.values(), now_ms(), conversation_id),
        )

    def idle_conversations(self, older_than_ms: int) -> list[str]:
        """Open chat conversations with no activity for ``older_than_ms`` (to be closed)."""
        rows = self._conn.execute(
            "SELECT id FROM conversations WHERE kind = 'chat' AND state = 'bot' AND updated_at < ?",
            (now_ms() - older_than_ms,),
        ).fetchall()
        return [r[0] for r in rows]

    def add_rating(
        self,
        conversation_id: str,
        brand_id: str,
        *,
        rating_bot: int | None,
        rating_human: int | None,
        comment: str | None,
        shared: bool,
    ) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO ratings (conversation_id, brand_id, rating_bot, rating_human, comment,"
            " created_at, shared) VALUES (?,?,?,?,?,?,?)",
            (conversation_id, brand_id, rating_bot, rating_human, comment, now_ms(), int(shared)),
        )

    def rating(self, conversation_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT * FROM ratings WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()
        return dict(row) if row else None

    def set_share_satisfaction(self, brand_id: str, share: bool) -> None:
        self._conn.execute("UPDATE brands SET share_satisfaction = ? WHERE id = ?", (int(share), brand_id))
        self._reload_brand(brand_id)

    def stats(self) -> list[dict[str, Any]]:
        """Per brand: how it treats the household (times in ms, medians computed by the caller)."""
        rows = self._conn.execute(
            "SELECT c.brand_id, c.created_at, c.first_reply_at, c.human_requested_at, c.human_joined_at,"
            " c.closed_at, c.had_human, r.rating_bot, r.rating_human"
            " FROM conversations c LEFT JOIN ratings r ON r.conversation_id = c.id"
            " WHERE c.kind = 'chat' ORDER BY c.brand_id"
        ).fetchall()
        return [dict(r) for r in rows]

    def conversations(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT c.id, c.brand_id, c.kind, c.state, c.created_at, c.updated_at,"
            " (SELECT text FROM messages m WHERE m.conversation_id = c.id AND m.direction != 'hub'"
            "  ORDER BY m.created_at DESC, m.rowid DESC LIMIT 1) AS last_text,"
            " (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS messages"
            " FROM conversations c ORDER BY c.updated_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(r) for r in rows]

    def add_message(
        self,
        *,
        message_id: str,
        conversation_id: str,
        brand_id: str,
        direction: str,
        type_: str,
        text: str,
        lang: str,
        author_kind: str,
        author_name: str,
        status: str,
        ref: str | None = None,
        extra: dict[str, Any] | None = None,
        created_at: int | None = None,
    ) -> MessageRow | None:
        """Insert a message; ``None`` if its id was already stored (a redelivery)."""
        now = now_ms()
        seq = self._seq + 1
        inserted = self._conn.execute(
            f"INSERT OR IGNORE INTO messages ({_MESSAGE_COLUMNS}) VALUES"  # noqa: S608 - constant
            " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                message_id,
                seq,
                conversation_id,
                brand_id,
                direction,
                type_,
                text,
                lang,
                author_kind,
                author_name,
                status,
                ref,
                json.dumps(extra or {}),
                created_at or now,
                now,
            ),
        ).rowcount
        if not inserted:
            return None
        self._seq = seq
        self._conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        return self.message(message_id)

    def set_status(
        self, message_id: str, status: str, *, only_from: tuple[str, ...] = ()
    ) -> MessageRow | None:
        """Move a message to ``status`` (optionally only from some statuses); the row if it changed."""
        query = "UPDATE messages SET status = ?, seq = ?, updated_at = ? WHERE id = ? AND status != ?"
        params: list[Any] = [status, self._seq + 1, now_ms(), message_id, status]
        if only_from:
            query += f" AND status IN ({','.join('?' * len(only_from))})"
            params.extend(only_from)
        if not self._conn.execute(query, params).rowcount:
            return None
        self._next_seq()
        return self.message(message_id)

    def message(self, message_id: str) -> MessageRow | None:
        row = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?",  # noqa: S608 - constant
            (message_id,),
        ).fetchone()
        return MessageRow.from_row(row) if row else None

    def messages(self, conversation_id: str) -> list[MessageRow]:
        self.conversation_brand(conversation_id)
        rows = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"  # noqa: S608
            " ORDER BY created_at, rowid",
            (conversation_id,),
        ).fetchall()
        return [MessageRow.from_row(r) for r in rows]

    def recent_messages(self, conversation_id: str, limit: int) -> list[MessageRow]:
        """The last ``limit`` messages of a conversation, oldest first (cheap however long it is)."""
        rows = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"  # noqa: S608
            " ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (conversation_id, limit),
        ).fetchall()
        return [MessageRow.from_row(r) for r in reversed(rows)]

    def changes_since(self, seq: int, limit: int = 500) -> list[MessageRow]:
        rows = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
            (seq, limit),
        ).fetchall()
        return [MessageRow.from_row(r) for r in rows]

    def notifications(self, limit: int = 100) -> list[MessageRow]:
        rows = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE type = 'notification'"  # noqa: S608
            " ORDER BY created_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [MessageRow.from_row(r) for r in rows]

    def cancel_pending(self, brand_id: str) -> list[MessageRow]:
        """Mark every message still waiting for ``brand_id`` as cancelled (the household opted out)."""
        ids = [
            r[0]
            for r in self._conn.execute(
                "SELECT id FROM messages WHERE brand_id = ? AND direction = 'out'"
                " AND status IN ('accepted', 'queued', 'sent')",
                (brand_id,),
            ).fetchall()
        ]
        return [row for i in ids if (row := self.set_status(i, "cancelled")) is not None]
