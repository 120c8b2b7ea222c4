"""The desk's durable state, in the brand SDK's SQLite file: queue, conversation lines, callbacks, opinions.

A conversation handed to people goes through these statuses::

    waiting ──take──► taken ──release(back_to_bot)──► bot
       │                 └────release(closed)───────► closed
       └──(the member closes: handoff ended)─────────► closed

While it is ``waiting`` or ``taken`` the brand's bot stays silent: the member's messages
are kept here, as lines, for the agents to read. :class:`DeskStore` never begins or
commits a transaction: :class:`~brand_adapters.sdk.BrandApp` wraps each change, together
with the envelopes it sends, in one.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Literal

from hub.errors import FoyerError

__all__ = [
    "DESK_SCHEMA",
    "Callback",
    "DeskConflict",
    "DeskConversation",
    "DeskError",
    "DeskEvent",
    "DeskLine",
    "DeskStore",
    "Feedback",
    "Idea",
    "UnknownDeskItem",
]

Status = Literal["waiting", "taken", "bot", "closed"]
HOLDING: tuple[Status, ...] = ("waiting", "taken")

DESK_SCHEMA = """
CREATE TABLE IF NOT EXISTS desk_conversations (
    conversation TEXT PRIMARY KEY,
    hub_id TEXT NOT NULL,
    status TEXT NOT NULL,          -- waiting | taken | bot | closed
    origin TEXT NOT NULL,          -- member | hub | bot: who asked for a person
    reason TEXT,
    lang TEXT NOT NULL,
    transcript TEXT NOT NULL,      -- JSON [{role, text}]: the context the hub (or the bot) gave
    request_id TEXT,               -- the envelope that asked (the ref of what we send back)
    agent_id TEXT,
    agent_name TEXT,
    outcome TEXT,                  -- back_to_bot | closed | member_closed
    queued_at INTEGER NOT NULL,
    taken_at INTEGER,
    ended_at INTEGER
);
CREATE INDEX IF NOT EXISTS desk_conversations_status ON desk_conversations(status, queued_at);
CREATE TABLE IF NOT EXISTS desk_lines (
    id TEXT PRIMARY KEY,           -- the member's message id, or the agent's reply id
    conversation TEXT NOT NULL,
    role TEXT NOT NULL,            -- member | human
    author TEXT,
    text TEXT NOT NULL,
    lang TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS desk_lines_conversation ON desk_lines(conversation, at);
CREATE TABLE IF NOT EXISTS desk_callbacks (
    id TEXT PRIMARY KEY,           -- the hub's handoff callback envelope id
    hub_id TEXT NOT NULL,
    conversation TEXT,
    reason TEXT,
    lang TEXT NOT NULL,
    transcript TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    done_by TEXT,
    done_at INTEGER
);
CREATE TABLE IF NOT EXISTS opinions (
    id TEXT PRIMARY KEY,           -- the hub's feedback or idea envelope id
    hub_id TEXT NOT NULL,
    conversation TEXT,
    kind TEXT NOT NULL,            -- feedback | idea
    body TEXT NOT NULL,            -- the envelope body, JSON
    received_at INTEGER NOT NULL
);
"""


class DeskError(FoyerError):
    """A desk operation that cannot be done."""

    code = "desk_error"


class DeskConflict(DeskError):
    """Another agent holds the conversation, or it is no longer in the state the operation needs."""

    code = "conflict"


class UnknownDeskItem(DeskError):
    """No such conversation (or callback) at the desk."""

    code = "unknown_conversation"


@dataclass(frozen=True)
class DeskLine:
    """One line of a held conversation: what the member wrote, or what an agent answered."""

    id: str
    role: Literal["member", "human"]
    author: str | None
    text: str
    lang: str
    at: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "author": self.author,
            "text": self.text,
            "lang": self.lang,
            "at": self.at,
        }


@dataclass(frozen=True)
class DeskConversation:
    """A conversation handed to the brand's people, with its context."""

    conversation: str
    hub_id: str
    status: Status
    origin: str
    reason: str | None
    lang: Literal["fr", "en"]
    transcript: tuple[dict[str, str], ...]
    request_id: str | None
    agent_id: str | None
    agent_name: str | None
    outcome: str | None
    queued_at: int
    taken_at: int | None
    ended_at: int | None
    position: int | None = None
    lines: tuple[DeskLine, ...] = field(default=())

    @property
    def holding(self) -> bool:
        """Whether people hold it (waiting or taken): the bot must stay silent."""
        return self.status in HOLDING

    def since_queued(self) -> tuple[DeskLine, ...]:
        """The member's messages since the conversation entered the queue."""
        return tuple(line for line in self.lines if line.role == "member" and line.at >= self.queued_at)

    def as_dict(self) -> dict[str, Any]:
        """The JSON the desk API returns (the household's hub id is left out: agents don't need it)."""
        return {
            "conversation": self.conversation,
            "status": self.status,
            "origin": self.origin,
            "reason": self.reason,
            "lang": self.lang,
            "transcript": list(self.transcript),
            "agent": self.agent_name,
            "agent_login": self.agent_id,
            "outcome": self.outcome,
            "position": self.position,
            "queued_at": self.queued_at,
            "taken_at": self.taken_at,
            "ended_at": self.ended_at,
            "messages_since": [line.as_dict() for line in self.since_queued()],
            "lines": [line.as_dict() for line in self.lines],
        }


@dataclass(frozen=True)
class Callback:
    """A member asked to be called back when no one was there."""

    id: str
    hub_id: str
    conversation: str | None
    reason: str | None
    lang: str
    transcript: tuple[dict[str, str], ...]
    requested_at: int
    done_by: str | None
    done_at: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation": self.conversation,
            "reason": self.reason,
            "lang": self.lang,
            "transcript": list(self.transcript),
            "requested_at": self.requested_at,
            "done_by": self.done_by,
            "done_at": self.done_at,
        }


@dataclass(frozen=True)
class Idea:
    """An idea a household sent the brand (co-construction)."""

    id: str
    conversation: str | None
    text: str
    lang: str
    received_at: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation": self.conversation,
            "text": self.text,
            "lang": self.lang,
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class Feedback:
    """A member's satisfaction answer, shared with the brand because the household allowed it."""

    id: str
    conversation: str | None
    rating_bot: int | None
    rating_human: int | None
    comment: str | None
    received_at: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation": self.conversation,
            "rating_bot": self.rating_bot,
            "rating_human": self.rating_human,
            "comment": self.comment,
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class DeskEvent:
    """What changed at the desk, pushed live to the agents' pages.

    ``kind``: ``queue`` (a conversation entered, was taken, released or closed),
    ``message`` (a member wrote in a held conversation), ``reply`` (an agent answered),
    ``callback``, ``idea``, ``feedback``.
    """

    kind: Literal["queue", "message", "reply", "callback", "idea", "feedback"]
    conversation: str | None = None
    text: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "conversation": self.conversation, "text": self.text}


_CONVERSATION_COLUMNS = (
    "conversation, hub_id, status, origin, reason, lang, transcript, request_id, agent_id, agent_name,"
    " outcome, queued_at, taken_at, ended_at"
)


class DeskStore:
    """The desk tables of one SQLite connection; the caller owns the transactions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        for statement in DESK_SCHEMA.split(";"):  # not executescript: it would commit the caller's work
            if statement.strip():
                conn.execute(statement)

    # --- conversations -------------------------------------------------------------------------

    def get(self, conversation: str, *, with_lines: bool = False) -> DeskConversation | None:
        row = self._conn.execute(
            f"SELECT {_CONVERSATION_COLUMNS} FROM desk_conversations WHERE conversation = ?",  # noqa: S608 - constant columns
            (conversation,),
        ).fetchone()
        if row is None:
            return None
        lines = self.lines(conversation) if with_lines else ()
        return _conversation(row, self.position(conversation), lines)

    def require(self, conversation: str) -> DeskConversation:
        found = self.get(conversation, with_lines=True)
        if found is None:
            raise UnknownDeskItem(f"conversation {conversation!r} is not at the desk")
        return found

    def holding(self, conversation: str) -> bool:
        row = self._conn.execute(
            "SELECT status FROM desk_conversations WHERE conversation = ?", (conversation,)
        ).fetchone()
        return row is not None and row["status"] in HOLDING

    def position(self, conversation: str) -> int | None:
        """1 for the next conversation an agent should take; None unless it is waiting."""
        row = self._conn.execute(
            "SELECT status, queued_at, rowid FROM desk_conversations WHERE conversation = ?", (conversation,)
        ).fetchone()
        if row is None or row["status"] != "waiting":
            return None
        ahead = self._conn.execute(
            "SELECT COUNT(*) FROM desk_conversations WHERE status = 'waiting'"
            " AND (queued_at < ? OR (queued_at = ? AND rowid < ?))",
            (row["queued_at"], row["queued_at"], row["rowid"]),
        ).fetchone()[0]
        return int(ahead) + 1

    def queue(self) -> list[DeskConversation]:
        """Conversations people hold: the waiting ones first (by arrival), then the taken ones."""
        rows = self._conn.execute(
            f"SELECT {_CONVERSATION_COLUMNS} FROM desk_conversations"  # noqa: S608 - constant columns
            " WHERE status IN ('waiting', 'taken')"
            " ORDER BY status = 'taken', queued_at, rowid"
        ).fetchall()
        out = []
        waiting = 0
        for row in rows:
            waiting += row["status"] == "waiting"
            position = waiting if row["status"] == "waiting" else None
            out.append(_conversation(row, position, self.lines(row["conversation"])))
        return out

    def enqueue(
        self,
        conversation: str,
        *,
        hub_id: str,
        origin: str,
        reason: str | None,
        lang: str,
        transcript: list[dict[str, str]],
        request_id: str | None,
        at: int,
    ) -> None:
        """Put a conversation in the waiting queue (again, if people had held it before)."""
        self._conn.execute(
            "INSERT INTO desk_conversations (conversation, hub_id, status, origin, reason, lang, transcript,"
            " request_id, queued_at) VALUES (?,?, 'waiting', ?,?,?,?,?,?)"
            " ON CONFLICT (conversation) DO UPDATE SET hub_id = excluded.hub_id, status = 'waiting',"
            " origin = excluded.origin, reason = excluded.reason, lang = excluded.lang,"
            " transcript = excluded.transcript, request_id = excluded.request_id,"
            " queued_at = excluded.queued_at, agent_id = NULL, agent_name = NULL, outcome = NULL,"
            " taken_at = NULL, ended_at = NULL",
            (conversation, hub_id, origin, reason, lang, json.dumps(transcript), request_id, at),
        )

    def take(self, conversation: str, agent_id: str, agent_name: str, at: int) -> bool:
        """Give a waiting conversation to one agent; False if that agent already had it.

        :class:`DeskConflict` if another agent has it or it is no longer waiting.
        """
        current = self.require(conversation)
        if current.status == "taken" and current.agent_id == agent_id:
            return False
        taken = self._conn.execute(
            "UPDATE desk_conversations SET status = 'taken', agent_id = ?, agent_name = ?, taken_at = ?"
            " WHERE conversation = ? AND status = 'waiting'",
            (agent_id, agent_name, at, conversation),
        ).rowcount
        if not taken:
            raise _conflict(current)
        return True

    def claim(self, conversation: str, agent_id: str | None) -> DeskConversation:
        """The conversation, if ``agent_id`` holds it (any holder when ``agent_id`` is None)."""
        current = self.require(conversation)
        if current.status != "taken" or (agent_id is not None and current.agent_id != agent_id):
            raise _conflict(current, wanted="taken by you")
        return current

    def end(self, conversation: str, *, status: Literal["bot", "closed"], outcome: str, at: int) -> bool:
        """Hand a held conversation back to the bot or close it; False if people no longer held it."""
        return bool(
            self._conn.execute(
                "UPDATE desk_conversations SET status = ?, outcome = ?, ended_at = ?"
                " WHERE conversation = ? AND status IN ('waiting', 'taken')",
                (status, outcome, at, conversation),
            ).rowcount
        )

    # --- lines ---------------------------------------------------------------------------------

    def add_line(
        self,
        line_id: str,
        conversation: str,
        *,
        role: Literal["member", "human"],
        author: str | None,
        text: str,
        lang: str,
        at: int,
    ) -> bool:
        return bool(
            self._conn.execute(
                "INSERT OR IGNORE INTO desk_lines (id, conversation, role, author, text, lang, at)"
                " VALUES (?,?,?,?,?,?,?)",
                (line_id, conversation, role, author, text, lang, at),
            ).rowcount
        )

    def lines(self, conversation: str) -> tuple[DeskLine, ...]:
        rows = self._conn.execute(
            "SELECT id, role, author, text, lang, at FROM desk_lines WHERE conversation = ?"
            " ORDER BY at, rowid",
            (conversation,),
        ).fetchall()
        return tuple(DeskLine(r["id"], r["role"], r["author"], r["text"], r["lang"], r["at"]) for r in rows)

    def last_member_line(self, conversation: str) -> str | None:
        row = self._conn.execute(
            "SELECT id FROM desk_lines WHERE conversation = ? AND role = 'member'"
            " ORDER BY at DESC, rowid DESC",
            (conversation,),
        ).fetchone()
        return str(row["id"]) if row else None

    # --- callbacks -----------------------------------------------------------------------------

    def add_callback(
        self,
        callback_id: str,
        *,
        hub_id: str,
        conversation: str | None,
        reason: str | None,
        lang: str,
        transcript: list[dict[str, str]],
        at: int,
    ) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO desk_callbacks"
            " (id, hub_id, conversation, reason, lang, transcript, requested_at) VALUES (?,?,?,?,?,?,?)",
            (callback_id, hub_id, conversation, reason, lang, json.dumps(transcript), at),
        )

    def callbacks(self, *, include_done: bool = False) -> list[Callback]:
        where = "" if include_done else " WHERE done_at IS NULL"
        rows = self._conn.execute(
            "SELECT id, hub_id, conversation, reason, lang, transcript, requested_at, done_by, done_at"  # noqa: S608 - constant
            f" FROM desk_callbacks{where} ORDER BY requested_at, rowid"
        ).fetchall()
        return [_callback(r) for r in rows]

    def callback(self, callback_id: str) -> Callback:
        row = self._conn.execute(
            "SELECT id, hub_id, conversation, reason, lang, transcript, requested_at, done_by, done_at"
            " FROM desk_callbacks WHERE id = ?",
            (callback_id,),
        ).fetchone()
        if row is None:
            raise UnknownDeskItem(f"callback {callback_id!r} is not at the desk")
        return _callback(row)

    def callback_done(self, callback_id: str, agent_name: str, at: int) -> None:
        self._conn.execute(
            "UPDATE desk_callbacks SET done_by = ?, done_at = ? WHERE id = ? AND done_at IS NULL",
            (agent_name, at, callback_id),
        )

    # --- feedback and ideas --------------------------------------------------------------------

    def add_opinion(
        self,
        opinion_id: str,
        *,
        hub_id: str,
        conversation: str | None,
        kind: Literal["feedback", "idea"],
        body: dict[str, Any],
        at: int,
    ) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO opinions (id, hub_id, conversation, kind, body, received_at)"
            " VALUES (?,?,?,?,?,?)",
            (opinion_id, hub_id, conversation, kind, json.dumps(body, ensure_ascii=False), at),
        )

    def _opinions(self, kind: str) -> list[tuple[sqlite3.Row, dict[str, Any]]]:
        rows = self._conn.execute(
            "SELECT id, conversation, body, received_at FROM opinions WHERE kind = ?"
            " ORDER BY received_at, rowid",
            (kind,),
        ).fetchall()
        return [(r, json.loads(r["body"])) for r in rows]

    def ideas(self) -> list[Idea]:
        return [
            Idea(r["id"], r["conversation"], body["text"], body.get("lang", "fr"), r["received_at"])
            for r, body in self._opinions("idea")
        ]

    def feedback(self) -> list[Feedback]:
        return [
            Feedback(
                r["id"],
                r["conversation"],
                body.get("rating_bot"),
                body.get("rating_human"),
                body.get("comment"),
                r["received_at"],
            )
            for r, body in self._opinions("feedback")
        ]


def _conversation(row: sqlite3.Row, position: int | None, lines: tuple[DeskLine, ...]) -> DeskConversation:
    return DeskConversation(
        conversation=row["conversation"],
        hub_id=row["hub_id"],
        status=row["status"],
        origin=row["origin"],
        reason=row["reason"],
        lang="en" if row["lang"] == "en" else "fr",
        transcript=tuple(json.loads(row["transcript"])),
        request_id=row["request_id"],
        agent_id=row["agent_id"],
        agent_name=row["agent_name"],
        outcome=row["outcome"],
        queued_at=row["queued_at"],
        taken_at=row["taken_at"],
        ended_at=row["ended_at"],
        position=position,
        lines=lines,
    )


def _callback(row: sqlite3.Row) -> Callback:
    return Callback(
        id=row["id"],
        hub_id=row["hub_id"],
        conversation=row["conversation"],
        reason=row["reason"],
        lang=row["lang"],
        transcript=tuple(json.loads(row["transcript"])),
        requested_at=row["requested_at"],
        done_by=row["done_by"],
        done_at=row["done_at"],
    )


def _conflict(current: DeskConversation, wanted: str = "waiting") -> DeskConflict:
    if current.status == "taken":
        return DeskConflict(
            f"conversation {current.conversation!r} is taken by {current.agent_name}; expected {wanted}"
        )
    return DeskConflict(f"conversation {current.conversation!r} is {current.status}; expected {wanted}")
