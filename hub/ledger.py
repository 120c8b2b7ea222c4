"""The disclosure ledger: every datum the home gave a brand, in an append-only hash chain.

Wired into the hub (:mod:`hub.service`); used so::

    ledger = Ledger(conn)
    result = gate(text, consents.granted(brand_id, member), lang)
    ledger.append_findings(brand_id, member, text, result.disclosed, envelope_id=envelope.id,
                           basis={f.scope: consents.basis(brand_id, member, f.scope)
                                  for f in result.disclosed})
    ledger.what_brand_knows(brand_id)   # {"email": ScopeSummary(count=2, values=("jean@…",), …)}
    ledger.verify()                     # VerifyResult(ok=True, first_bad_seq=None, reason="…")
    ledger.erase_brand(brand_id)        # the brand was told to forget: the values go too

What is kept: the value itself
==============================

Each entry keeps the **value disclosed, in clear** (``"jean.dupont@exemple.fr"``),
not only a hint. The ledger lives at home, in the same SQLite file as the
conversations (which hold the same words in clear anyway), readable by the
household alone; its purpose is to answer "what exactly does this brand know
about me?", and a hint cannot say *which* of two addresses was given. A masked
:attr:`LedgerEntry.hint` (``"j***@exemple.fr"``) is computed for display where
the full value is not wanted (a notification, a shared screen). After
:meth:`Ledger.erase_brand` neither remains.

The chain, and why it has two levels
====================================

Entries are numbered ``seq`` = 1, 2, 3… with no gap. Each one stores::

    value_digest = SHA-256("foyer-ledger-value-v1\\0" || nonce || UTF-8 value)   (hex)
    hash         = SHA-256("foyer-ledger-v1\\0" || canonical_json({seq, ts, op, brand_id, member,
                            scope, kind, basis, envelope_id, value_digest, prev_hash}))

``prev_hash`` is the previous entry's ``hash`` (64 zeros for the first), and
``nonce`` is 32 random bytes per entry. The chain covers every field through
``value_digest``, so editing a value (or its digest, or its nonce), a date, a
brand, deleting or reordering rows breaks :meth:`Ledger.verify`. The head (last
``seq`` and ``hash``) is also kept in ``ledger_head``, so deleting the *last*
rows is caught too.

Erasure needs the value out while the chain still verifies. The value is
therefore committed by ``value_digest`` alone: :meth:`Ledger.erase_brand` sets
the brand's ``value`` and ``nonce`` to NULL and keeps the digest. Without the
nonce the digest reveals nothing, not even for a phone number (ten digits a plain
hash would give away in seconds). The erasure itself is appended to the chain
as an ``op = "erase"`` entry, and :meth:`verify` accepts a value-less entry
only if an erase entry for its brand comes after it; so values cannot be
removed silently either.

Trade-offs, written down:

- After erasure the ledger still says *that* a datum of kind ``email`` went to
  the brand at that time, under which consent, in which envelope, and that it
  was erased: the household's proof that it asked the brand to forget. Only
  the values (and their nonces) are gone; an erased value can no longer be
  re-checked against its digest, only its place in the chain can.
- A hash chain without a key proves order and integrity against edits made
  without recomputing the hashes. Someone who can write the file can rebuild
  the whole chain. :meth:`Ledger.head` gives ``(seq, hash)`` so that the hub
  can sign it or hand it out (an export, a consent receipt) and
  ``verify(expected_head=…)`` checks the ledger still extends it.
- SQLite keeps deleted bytes in free pages and in the WAL. ``erase_brand`` turns
  on ``secure_delete`` for its update (freed space is zeroed) and, when it owns
  its transaction, truncates the WAL afterwards (:meth:`Ledger.purge_files`).
  Inside a caller's transaction, call ``purge_files()`` after the commit. The
  same datum may still be in the conversations' text: erasing those is the
  store's job.

Schema (created if missing)::

    ledger       seq, ts, op (disclose | erase), brand_id, member, scope, kind, basis,
                 envelope_id, value, nonce, value_digest, erased_at, prev_hash, hash
    ledger_head  one row: seq, hash

``basis`` is the consent receipt id that allowed the disclosure, or ``"once"``
(a one-off answer). Every method joins the caller's open transaction (with a
savepoint) or runs in its own ``BEGIN IMMEDIATE`` transaction, so two writers
cannot both extend the same head.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from hub.crypto import canonical_json
from hub.protocol import check_id, now_ms
from hub.sqlite import atomic as _atomic

if TYPE_CHECKING:
    from hub.privacy import Finding

__all__ = [
    "GENESIS",
    "Ledger",
    "LedgerEntry",
    "ScopeSummary",
    "VerifyResult",
    "entry_hash",
    "mask_hint",
    "value_digest",
]

GENESIS: Final = "0" * 64
"""The ``prev_hash`` of the first entry."""

_ENTRY_CONTEXT: Final = b"foyer-ledger-v1\x00"
_VALUE_CONTEXT: Final = b"foyer-ledger-value-v1\x00"
_MAX_VALUE_CHARS: Final = 4000
_MEMBER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_LABEL_RE = re.compile(r"^[a-z0-9_*][a-z0-9_-]{0,39}$")

Op = Literal["disclose", "erase"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ledger (
        seq INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        op TEXT NOT NULL,                       -- disclose | erase
        brand_id TEXT NOT NULL,
        member TEXT NOT NULL,
        scope TEXT NOT NULL,                    -- the consent scope ("*" for an erase)
        kind TEXT NOT NULL,                     -- what was found: email, phone, postal_address…
        basis TEXT NOT NULL,                    -- consent receipt id | once | erase
        envelope_id TEXT,
        value TEXT,                             -- in clear; NULL once erased
        nonce TEXT,                             -- hex; NULL once erased
        value_digest TEXT NOT NULL,
        erased_at INTEGER,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS ledger_brand ON ledger(brand_id, seq)",
    """CREATE TABLE IF NOT EXISTS ledger_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    )""",
)

_COLUMNS = (
    "seq, ts, op, brand_id, member, scope, kind, basis, envelope_id, value, nonce, value_digest,"
    " erased_at, prev_hash, hash"
)


# --- hashing ----------------------------------------------------------------------------------


def value_digest(nonce_hex: str, value: str) -> str:
    """The hiding commitment to one value: SHA-256 over a context, the nonce and the value."""
    return hashlib.sha256(_VALUE_CONTEXT + bytes.fromhex(nonce_hex) + value.encode("utf-8")).hexdigest()


def entry_hash(
    *,
    seq: int,
    ts: int,
    op: str,
    brand_id: str,
    member: str,
    scope: str,
    kind: str,
    basis: str,
    envelope_id: str | None,
    value_digest: str,
    prev_hash: str,
) -> str:
    """The chain hash of one entry (see the module docstring)."""
    fields = {
        "seq": seq,
        "ts": ts,
        "op": op,
        "brand_id": brand_id,
        "member": member,
        "scope": scope,
        "kind": kind,
        "basis": basis,
        "envelope_id": envelope_id,
        "value_digest": value_digest,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_ENTRY_CONTEXT + canonical_json(fields)).hexdigest()


def mask_hint(kind: str, value: str) -> str:
    """A masked hint of ``value`` for display: ``j***@exemple.fr``, ``***78``, ``*** 75011 Paris``."""
    value = value.strip()
    if kind == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "phone":
        digits = re.sub(r"\D", "", value)
        return "***" + digits[-2:]
    if kind == "postal_address":
        town = re.search(r"\b\d{5}\s+\S.*$", value)  # a French postcode and its town
        return "*** " + town.group(0) if town else "***"
    if len(value) <= 4:
        return "***"
    return value[:1] + "***" + value[-2:]


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerEntry:
    """One entry: a datum disclosed (``op="disclose"``) or a brand's values erased (``"erase"``).

    ``value`` is None once erased (``erased_at`` says when). For an erase entry,
    ``value`` is the number of values erased.
    """

    seq: int
    ts: int
    op: Op
    brand_id: str
    member: str
    scope: str
    kind: str
    basis: str
    envelope_id: str | None
    value: str | None
    value_digest: str
    erased_at: int | None
    prev_hash: str
    hash: str

    @property
    def hint(self) -> str | None:
        """A masked form of ``value`` for display (None once erased)."""
        if self.value is None or self.op != "disclose":
            return None
        return mask_hint(self.kind, self.value)


@dataclass(frozen=True)
class ScopeSummary:
    """What a brand holds for one scope: when first and last given, how often, which values."""

    scope: str
    first_disclosed: int
    last_disclosed: int
    count: int
    values: tuple[str, ...]
    hints: tuple[str, ...]
    kinds: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class VerifyResult:
    """``ok``, else the first entry that fails (``first_bad_seq``) and why; ``checked`` entries read."""

    ok: bool
    first_bad_seq: int | None
    reason: str
    checked: int = 0


def _entry(row: tuple[object, ...] | sqlite3.Row) -> LedgerEntry:
    r = tuple(row)
    return LedgerEntry(
        seq=int(r[0]),
        ts=int(r[1]),
        op=r[2],
        brand_id=str(r[3]),
        member=str(r[4]),
        scope=str(r[5]),
        kind=str(r[6]),
        basis=str(r[7]),
        envelope_id=None if r[8] is None else str(r[8]),
        value=None if r[9] is None else str(r[9]),
        value_digest=str(r[11]),
        erased_at=None if r[12] is None else int(r[12]),
        prev_hash=str(r[13]),
        hash=str(r[14]),
    )


def _check_label(what: str, value: str) -> str:
    if not isinstance(value, str) or not _LABEL_RE.match(value):
        raise ValueError(f"{what} {value!r} is not valid: expected 1-40 characters of a-z, 0-9, '_' or '-'")
    return value


def _check_member(member: str) -> str:
    if not isinstance(member, str) or not _MEMBER_RE.match(member):
        raise ValueError(f"member {member!r} is not valid: expected 'household' or a member id")
    return member


# --- the ledger -------------------------------------------------------------------------------


class Ledger:
    """The ``ledger`` table of one SQLite connection; ``clock`` (ms) dates the entries."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], int] = now_ms) -> None:
        self.conn = conn
        self.clock = clock
        for statement in _SCHEMA:  # not executescript: it would commit the caller's work
            conn.execute(statement)

    # --- writing ------------------------------------------------------------------------------

    def append(
        self,
        brand_id: str,
        member: str,
        scope: str,
        value: str,
        *,
        basis: str,
        envelope_id: str | None = None,
        kind: str | None = None,
    ) -> LedgerEntry:
        """Record that ``value`` (of ``scope``) went to ``brand_id`` from ``member``.

        ``basis``: the consent receipt id that allowed it, or ``"once"``. ``kind``:
        what the datum is when it differs from the scope (default: the scope).
        """
        check_id("brand", brand_id)
        _check_member(member)
        _check_label("scope", scope)
        kind = _check_label("kind", scope if kind is None else kind)
        if not isinstance(basis, str) or not 1 <= len(basis) <= 64 or basis == "erase":
            raise ValueError(f"basis {basis!r} is not valid: expected a consent receipt id or 'once'")
        if not isinstance(value, str) or not 1 <= len(value) <= _MAX_VALUE_CHARS:
            raise ValueError(f"value must be a string of 1 to {_MAX_VALUE_CHARS} characters")
        with _atomic(self.conn):
            return self._append(
                "disclose",
                brand_id=brand_id,
                member=member,
                scope=scope,
                kind=kind,
                basis=basis,
                envelope_id=envelope_id,
                value=value,
            )

    def append_findings(
        self,
        brand_id: str,
        member: str,
        text: str,
        disclosed: Iterable[Finding],
        *,
        basis: Mapping[str, str | None] | str,
        envelope_id: str | None = None,
    ) -> list[LedgerEntry]:
        """Record each finding :func:`hub.privacy.gate` disclosed in ``text``, in one transaction.

        ``basis``: one basis for all (``"once"``), or ``{scope: receipt id}``; a
        finding whose scope has no basis raises ``ValueError`` and nothing is written.
        """
        items = []
        for finding in disclosed:
            reason = basis if isinstance(basis, str) else basis.get(finding.scope)
            if reason is None:
                raise ValueError(f"no consent basis given for scope {finding.scope!r}: it was not granted")
            items.append((finding, reason, text[finding.start : finding.end]))
        with _atomic(self.conn):
            return [
                self.append(
                    brand_id, member, f.scope, value, basis=reason, envelope_id=envelope_id, kind=f.kind
                )
                for f, reason, value in items
            ]

    def _append(
        self,
        op: Op,
        *,
        brand_id: str,
        member: str,
        scope: str,
        kind: str,
        basis: str,
        envelope_id: str | None,
        value: str,
    ) -> LedgerEntry:
        seq, prev_hash = self.head() or (0, GENESIS)
        seq += 1
        ts = int(self.clock())
        nonce = secrets.token_hex(32)
        digest = value_digest(nonce, value)
        hashed = entry_hash(
            seq=seq,
            ts=ts,
            op=op,
            brand_id=brand_id,
            member=member,
            scope=scope,
            kind=kind,
            basis=basis,
            envelope_id=envelope_id,
            value_digest=digest,
            prev_hash=prev_hash,
        )
        self.conn.execute(
            f"INSERT INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (seq, ts, op, brand_id, member, scope, kind, basis, envelope_id, value, nonce, digest, None,
             prev_hash, hashed),
        )  # fmt: skip
        self.conn.execute(
            "INSERT INTO ledger_head (id, seq, hash) VALUES (1, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (seq, hashed),
        )
        return LedgerEntry(
            seq, ts, op, brand_id, member, scope, kind, basis, envelope_id, value, digest, None, prev_hash,
            hashed,
        )  # fmt: skip

    def erase_brand(self, brand_id: str, member: str = "household") -> int:
        """Erase every value disclosed to ``brand_id``; return how many. The chain still verifies.

        Appends an ``erase`` entry (by ``member``) recording the count, even when
        it is 0 (the request itself is on record).
        """
        check_id("brand", brand_id)
        _check_member(member)
        (previous,) = self.conn.execute("PRAGMA secure_delete").fetchone()
        self.conn.execute("PRAGMA secure_delete = ON")
        try:
            with _atomic(self.conn) as owned:
                now = int(self.clock())
                count = self.conn.execute(
                    "UPDATE ledger SET value = NULL, nonce = NULL, erased_at = ?"
                    " WHERE brand_id = ? AND op = 'disclose' AND value IS NOT NULL",
                    (now, brand_id),
                ).rowcount
                self._append(
                    "erase",
                    brand_id=brand_id,
                    member=member,
                    scope="*",
                    kind="erasure",
                    basis="erase",
                    envelope_id=None,
                    value=str(count),
                )
        finally:
            self.conn.execute(f"PRAGMA secure_delete = {int(previous)}")
        if owned:
            self.purge_files()
        return count

    def purge_files(self) -> bool:
        """Checkpoint and truncate the WAL, so erased bytes leave it; False if readers kept it busy.

        Call it outside any transaction (after committing one that erased).
        """
        if self.conn.in_transaction:
            raise RuntimeError("purge_files() needs no open transaction: commit first")
        row = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return row is None or int(row[0]) == 0

    # --- reading ------------------------------------------------------------------------------

    def head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the last entry, or None for an empty ledger: the value to anchor."""
        row = self.conn.execute("SELECT seq, hash FROM ledger_head WHERE id = 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def entries(self, brand_id: str | None = None, *, since_seq: int = 0) -> list[LedgerEntry]:
        """Entries after ``since_seq``, oldest first; only ``brand_id``'s when given."""
        sql = f"SELECT {_COLUMNS} FROM ledger WHERE seq > ?"  # noqa: S608 - constant columns
        params: tuple[object, ...] = (since_seq,)
        if brand_id is not None:
            sql += " AND brand_id = ?"
            params += (brand_id,)
        return [_entry(row) for row in self.conn.execute(sql + " ORDER BY seq", params)]

    def what_brand_knows(self, brand_id: str) -> dict[str, ScopeSummary]:
        """Per scope, what ``brand_id`` was given and not asked to forget since.

        Values are distinct, in the order first given. After :meth:`erase_brand`
        this is empty until something new is disclosed.
        """
        summary: dict[str, ScopeSummary] = {}
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM ledger"  # noqa: S608 - constant columns
            " WHERE brand_id = ? AND op = 'disclose' AND value IS NOT NULL ORDER BY seq",
            (brand_id,),
        )
        for entry in map(_entry, rows):
            assert entry.value is not None  # the query says so
            hint = mask_hint(entry.kind, entry.value)
            known = summary.get(entry.scope)
            if known is None:
                summary[entry.scope] = ScopeSummary(
                    entry.scope, entry.ts, entry.ts, 1, (entry.value,), (hint,), (entry.kind,)
                )
                continue
            summary[entry.scope] = ScopeSummary(
                entry.scope,
                known.first_disclosed,
                entry.ts,
                known.count + 1,
                known.values if entry.value in known.values else (*known.values, entry.value),
                known.hints if hint in known.hints else (*known.hints, hint),
                known.kinds if entry.kind in known.kinds else (*known.kinds, entry.kind),
            )
        return summary

    # --- checking -----------------------------------------------------------------------------

    def verify(self, expected_head: tuple[int, str] | None = None) -> VerifyResult:
        """Walk the chain; the first entry that was edited, removed, moved or erased without record.

        With ``expected_head`` (an earlier :meth:`head`, kept elsewhere), also check
        that the ledger still contains that entry unchanged.
        """
        erased_up_to = {
            str(r[0]): int(r[1])
            for r in self.conn.execute("SELECT brand_id, MAX(seq) FROM ledger WHERE op = 'erase' GROUP BY 1")
        }
        prev_hash, expected_seq, checked = GENESIS, 1, 0
        anchored: str | None = None
        for row in self.conn.execute(f"SELECT {_COLUMNS} FROM ledger ORDER BY seq"):  # noqa: S608
            r = tuple(row)
            bad = self._check_row(r, expected_seq, prev_hash, erased_up_to)
            if bad:
                return VerifyResult(False, expected_seq, bad, checked)
            prev_hash, checked = str(r[14]), checked + 1
            if expected_head is not None and expected_seq == expected_head[0]:
                anchored = prev_hash
            expected_seq += 1
        head = self.head()
        last = (expected_seq - 1, prev_hash) if checked else None
        if head != last:
            if head is None:
                return VerifyResult(False, 1, "the ledger's head record is missing", checked)
            if last is None or head[0] > last[0]:
                missing = 1 if last is None else last[0] + 1
                return VerifyResult(
                    False, missing, f"entries {missing} to {head[0]} were deleted (the head is at {head[0]})",
                    checked,
                )  # fmt: skip
            return VerifyResult(False, head[0], "the head record does not match the last entry", checked)
        if expected_head is not None and anchored != expected_head[1]:
            return VerifyResult(
                False, expected_head[0], f"entry {expected_head[0]} differs from the anchored head", checked
            )
        return VerifyResult(True, None, f"{checked} entries verified", checked)

    @staticmethod
    def _check_row(
        r: tuple[object, ...], expected_seq: int, prev_hash: str, erased_up_to: dict[str, int]
    ) -> str | None:
        """Why row ``r`` breaks the chain, or None."""
        seq, ts, op, brand_id, member, scope, kind, basis, envelope_id = r[:9]
        digest, stored_prev, stored_hash = r[11], r[13], r[14]
        if seq != expected_seq:
            return f"entry {expected_seq} is missing (found {seq} next): entries were deleted or moved"
        if stored_prev != prev_hash:
            return f"entry {seq} does not follow entry {expected_seq - 1}: prev_hash differs"
        bad_value = _check_value(r, erased_up_to)
        if bad_value:
            return bad_value
        try:
            recomputed_hash = entry_hash(
                seq=expected_seq,
                ts=ts,  # type: ignore[arg-type]
                op=str(op),
                brand_id=str(brand_id),
                member=str(member),
                scope=str(scope),
                kind=str(kind),
                basis=str(basis),
                envelope_id=None if envelope_id is None else str(envelope_id),
                value_digest=str(digest),
                prev_hash=prev_hash,
            )
        except (TypeError, ValueError):
            return f"entry {seq} has a field that cannot be hashed"
        if recomputed_hash != stored_hash:
            return f"entry {seq} was changed: its hash does not match its fields"
        return None


def _check_value(r: tuple[object, ...], erased_up_to: dict[str, int]) -> str | None:
    """Why row ``r``'s value does not match its digest, or was removed without an erasure on record."""
    seq, op, brand_id = r[0], r[2], r[3]
    value, nonce, digest, erased_at = r[9:13]
    if op not in ("disclose", "erase"):
        return f"entry {seq} has an unknown op {op!r}"
    if value is None:
        if op != "disclose" or nonce is not None or erased_at is None:
            return f"entry {seq} lost its value without being erased"
        if erased_up_to.get(str(brand_id), 0) <= int(seq):  # type: ignore[call-overload]
            return f"entry {seq}'s value was removed, but no erasure of {brand_id!r} is recorded after it"
        return None
    try:
        recomputed: str | None = value_digest(str(nonce), str(value))
    except ValueError:  # a nonce that is not hex
        recomputed = None
    if recomputed != digest or erased_at is not None:
        return f"entry {seq}'s value was changed: it does not match its digest"
    return None
