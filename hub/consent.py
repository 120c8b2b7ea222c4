"""Consents: which scopes each brand may receive, per member, with a signed receipt for every change.

Wired into the hub (:mod:`hub.service`); used so::

    consents = Consents(conn, identity, hub_id)
    receipt = consents.grant(manifest, "household", ["email"])     # whole household
    consents.deny(manifest, "alice", ["email"])                       # Alice overrides it
    consents.granted("sportissimo", "alice")     # frozenset() — feed it to privacy.gate()
    consents.granted("sportissimo", "bob")       # frozenset({"email"})
    consents.basis("sportissimo", "bob", "email")  # the receipt id, for the ledger

States and who they apply to
============================

A consent is kept per ``(brand, member, scope)``. ``member`` is a member id, or
:data:`HOUSEHOLD` (``"household"``) for a choice that applies to every member.
Each change sets one of these states:

=========  ==================================================================
granted    the brand may receive the scope (the privacy gate lets it through)
denied     the household said no when asked
revoked    a grant was withdrawn
inherit    (members only) drop the member's own choice: follow the household
=========  ==================================================================

:meth:`Consents.granted` resolves a member's scopes: for each scope, the
member's own state if it has one (other than ``inherit``), else the
household's. Only ``granted`` counts; anything else, or nothing, is not granted.
So a member's ``denied`` or ``revoked`` hides a household grant from that
member, and a member's ``granted`` adds a scope the household did not grant.

A scope can be granted only if the brand's manifest asks for it: the purpose
the brand stated is what the member agrees to, and it is copied into the
history and the receipt *as it was at that time* (the manifest can change
later). That is why the changing methods take the :class:`~hub.protocol.Manifest`
itself rather than a brand id. Denying or revoking works for any protocol scope.
Every change is a new explicit act, so even re-granting a granted scope issues
a receipt (a renewal).

Data requests
=============

When a brand asks for a datum in a conversation, the hub asks the member and
passes the answer to :meth:`Consents.remember_answer`:

- ``"always"``: grant the scope (to that member, or to the household) → disclose;
- ``"once"``: disclose this once, consent unchanged, no receipt; the ledger
  records ``"once"`` as its basis;
- ``"no"``: deny the scope → do not disclose.

It returns an :class:`AnswerOutcome`: ``disclose`` and the ``basis`` to write in
the disclosure ledger (a receipt id, or ``"once"``).

Consent receipts
================

Every change writes a receipt: a JSON record in the spirit of the Kantara
Initiative Consent Receipt v1.1 and ISO/IEC TS 27560 (consent record
information structure), in snake_case, integers only::

    {
      "version": "foyer-consent-receipt/1",
      "receipt_id": "0192…",                    # UUIDv7 (hub.protocol.new_id)
      "timestamp": 1767225600000,               # ms since the epoch
      "jurisdiction": "FR",
      "method": "explicit via Foyer hub",       # Kantara: collectionMethod
      "consent_type": "explicit",
      "hub": {"id": "home-1", "sign_key": "…"}, # the signer (Kantara: publicKey)
      "controller": {"id": "sportissimo", "name": "Sportissimo",
                     "contact": [{"kind": "email", "value": "…"}]},
      "subject": {"member": "alice", "household_wide": false},
      "purposes": [                              # sorted by scope
        {"scope": "email", "state": "granted", "required": false,
         "purpose": {"fr": "…", "en": "…"}}     # null if the manifest does not ask for it
      ],
      "termination": "revocable at any time from the Foyer hub",
      "previous_receipt_id": "0192…"             # this subject's previous receipt with
    }                                            # this brand, or null

``sig`` is the hub's Ed25519 signature (base64url, no padding) over
``b"foyer-consent-receipt-v1\\x00" + canonical_json(record)``
(:func:`hub.crypto.canonical_json`). The context prefix keeps a receipt
signature from ever being valid as an envelope or rotation signature made with
the same key (those inputs start with a length prefix, a zero byte).
:func:`verify_receipt` checks one against the hub's public keys (pass the
current and the previous keys after a rotation). The hub may hand receipts to
the member (an export) or to the brand: both can check them with the hub's
public signing key alone.

Transactions
============

Every method joins the caller's open transaction if there is one (with a
savepoint) and otherwise runs in its own ``BEGIN IMMEDIATE`` transaction, so
a consent change and its receipt are written together or not at all.

Schema (created if missing)::

    consent_states    (brand_id, member, scope) → state, purpose, changed_at, receipt_id
    consent_events    every change, in order: the history
    consent_receipts  n, id, brand_id, member, ts, record (canonical JSON), sig, previous_id
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import nacl.exceptions
import nacl.signing

from hub.crypto import Identity, PublicKeys, b64decode, b64encode, canonical_json
from hub.protocol import SCOPES, Manifest, ScopeRequest, check_id, new_id, now_ms
from hub.sqlite import atomic as _atomic

__all__ = [
    "ANSWERS",
    "HOUSEHOLD",
    "RECEIPT_VERSION",
    "STATES",
    "Answer",
    "AnswerOutcome",
    "ConsentEvent",
    "ConsentState",
    "Consents",
    "Receipt",
    "State",
    "check_member",
    "receipt_message",
    "verify_receipt",
]

HOUSEHOLD: Final = "household"
"""The member id of a choice that applies to the whole household."""

RECEIPT_VERSION: Final = "foyer-consent-receipt/1"
_RECEIPT_CONTEXT: Final = b"foyer-consent-receipt-v1\x00"
_SIG_BYTES: Final = 64

State = Literal["granted", "denied", "revoked", "inherit"]
STATES: Final[tuple[State, ...]] = ("granted", "denied", "revoked", "inherit")
Answer = Literal["once", "always", "no"]
ANSWERS: Final[tuple[Answer, ...]] = ("once", "always", "no")

_MEMBER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS consent_states (
        brand_id TEXT NOT NULL,
        member TEXT NOT NULL,
        scope TEXT NOT NULL,
        state TEXT NOT NULL,                    -- granted | denied | revoked | inherit
        purpose TEXT,                           -- {"fr": …, "en": …} as stated then, or NULL
        changed_at INTEGER NOT NULL,
        receipt_id TEXT NOT NULL,
        PRIMARY KEY (brand_id, member, scope)
    )""",
    """CREATE TABLE IF NOT EXISTS consent_events (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        brand_id TEXT NOT NULL,
        member TEXT NOT NULL,
        scope TEXT NOT NULL,
        state TEXT NOT NULL,
        purpose TEXT,
        receipt_id TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS consent_events_brand ON consent_events(brand_id, n)",
    """CREATE TABLE IF NOT EXISTS consent_receipts (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        brand_id TEXT NOT NULL,
        member TEXT NOT NULL,
        ts INTEGER NOT NULL,
        record TEXT NOT NULL,                   -- canonical JSON, exactly the signed bytes
        sig TEXT NOT NULL,
        previous_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS consent_receipts_brand ON consent_receipts(brand_id, member, n)",
)


def check_member(member: str) -> str:
    """Return ``member`` if it is :data:`HOUSEHOLD` or a valid member id, else raise ``ValueError``."""
    if not isinstance(member, str) or not _MEMBER_RE.match(member):
        raise ValueError(
            f"member {member!r} is not valid: expected {HOUSEHOLD!r} or 1-64 characters of"
            " letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
        )
    return member


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    if isinstance(scopes, str):
        raise TypeError(f"scopes {scopes!r} is a string; expected a list of scopes")
    chosen = sorted(set(scopes))
    if not chosen:
        raise ValueError("no scope given; expected at least one of " + ", ".join(SCOPES))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise ValueError(f"scope {unknown[0]!r} is unknown; expected one of {', '.join(SCOPES)}")
    return chosen


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """A signed consent receipt: ``record`` (see the module docstring) and its ``sig``."""

    record: dict[str, Any]
    sig: str

    @property
    def id(self) -> str:
        return str(self.record["receipt_id"])

    @property
    def ts(self) -> int:
        return int(self.record["timestamp"])

    def as_dict(self) -> dict[str, Any]:
        """``{"record": …, "sig": …}``: the shape to export or hand to a brand."""
        return {"record": self.record, "sig": self.sig}


@dataclass(frozen=True)
class ConsentEvent:
    """One change in a brand's consent history."""

    ts: int
    brand_id: str
    member: str
    scope: str
    state: State
    purpose: dict[str, str] | None
    receipt_id: str


@dataclass(frozen=True)
class ConsentState:
    """The current state of one ``(brand, member, scope)``, as set by its last change."""

    brand_id: str
    member: str
    scope: str
    state: State
    purpose: dict[str, str] | None
    changed_at: int
    receipt_id: str


@dataclass(frozen=True)
class AnswerOutcome:
    """What to do after a member answered a brand's request for a datum.

    ``disclose``: send the datum (through the privacy gate, with the scope added
    for this message). ``basis``: what to record in the disclosure ledger — the
    receipt id of the grant, or ``"once"``; ``None`` when nothing is disclosed.
    ``receipt``: the receipt the answer issued (``"always"`` and ``"no"``).
    """

    disclose: bool
    basis: str | None
    receipt: Receipt | None


# --- signatures -------------------------------------------------------------------------------


def receipt_message(record: Mapping[str, Any]) -> bytes:
    """The exact bytes the hub signs for ``record``: context, then its canonical JSON."""
    return _RECEIPT_CONTEXT + canonical_json(dict(record))


def _sign_keys(public_keys: PublicKeys | str | Iterable[PublicKeys | str]) -> list[str]:
    if isinstance(public_keys, PublicKeys | str):
        public_keys = [public_keys]
    return [key.sign if isinstance(key, PublicKeys) else key for key in public_keys]


def verify_receipt(
    record: Mapping[str, Any], sig: str, public_keys: PublicKeys | str | Iterable[PublicKeys | str]
) -> bool:
    """Whether ``sig`` is a hub's signature of ``record`` under one of ``public_keys``.

    ``public_keys``: the hub's :class:`~hub.crypto.PublicKeys` (or its base64url
    signing key), or several (current and previous, after a rotation). The
    ``sign_key`` written inside the record is *not* trusted: only the keys given
    here are. Never raises on bad input: anything malformed is ``False``.
    """
    try:
        message = receipt_message(record)
        signature = b64decode(sig)
        if len(signature) != _SIG_BYTES:
            return False
        keys = _sign_keys(public_keys)
    except (TypeError, ValueError, AttributeError, RecursionError):
        return False
    for key in keys:
        try:
            nacl.signing.VerifyKey(b64decode(key)).verify(message, signature)
        except (TypeError, ValueError, nacl.exceptions.CryptoError):
            continue
        return True
    return False


# --- the store --------------------------------------------------------------------------------


class Consents:
    """The household's consents, their history and their receipts, in one SQLite connection.

    ``identity`` signs the receipts; ``hub_id`` names the hub in them; ``clock``
    (milliseconds) dates every change; ``jurisdiction`` is written in receipts.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        identity: Identity,
        hub_id: str,
        *,
        clock: Callable[[], int] = now_ms,
        jurisdiction: str = "FR",
    ) -> None:
        self.conn = conn
        self.identity = identity
        self.hub_id = check_id("hub", hub_id)
        self.clock = clock
        self.jurisdiction = jurisdiction
        for statement in _SCHEMA:  # not executescript: it would commit the caller's work
            conn.execute(statement)

    # --- changes ------------------------------------------------------------------------------

    def grant(self, brand: Manifest, member: str, scopes: Iterable[str]) -> Receipt:
        """Grant ``scopes`` to ``brand`` for ``member`` (or the household); the receipt."""
        return self.change(brand, member, dict.fromkeys(_check_scopes(scopes), "granted"))

    def deny(self, brand: Manifest, member: str, scopes: Iterable[str]) -> Receipt:
        """Record that ``member`` refused ``scopes`` to ``brand``; the receipt."""
        return self.change(brand, member, dict.fromkeys(_check_scopes(scopes), "denied"))

    def revoke(self, brand: Manifest, member: str, scopes: Iterable[str]) -> Receipt:
        """Withdraw ``scopes`` from ``brand`` for ``member``; the receipt."""
        return self.change(brand, member, dict.fromkeys(_check_scopes(scopes), "revoked"))

    def inherit(self, brand: Manifest, member: str, scopes: Iterable[str]) -> Receipt:
        """Drop ``member``'s own choice for ``scopes``: it follows the household again."""
        return self.change(brand, member, dict.fromkeys(_check_scopes(scopes), "inherit"))

    def change(self, brand: Manifest, member: str, states: Mapping[str, State]) -> Receipt:
        """Set several scopes at once (one act, one receipt): ``{"email": "granted", …}``.

        Raises ``ValueError`` for an unknown scope or state, a scope granted that
        the manifest does not ask for, or ``inherit`` for the household itself.
        """
        check_member(member)
        scopes = _check_scopes(states)
        requested: dict[str, ScopeRequest] = {request.scope: request for request in brand.scopes}
        for scope in scopes:
            state = states[scope]
            if state not in STATES:
                raise ValueError(f"state {state!r} for {scope!r} is unknown; expected one of {STATES}")
            if state == "granted" and scope not in requested:
                asked = ", ".join(sorted(requested)) or "none"
                raise ValueError(
                    f"{brand.id} does not ask for {scope!r} in its manifest, so it has no purpose to"
                    f" consent to; it asks for: {asked}"
                )
            if state == "inherit" and member == HOUSEHOLD:
                raise ValueError(f"{HOUSEHOLD!r} has nothing to inherit from; expected a member id")
        ts = int(self.clock())
        purposes = []
        for scope in scopes:
            request = requested.get(scope)
            purposes.append(
                {
                    "scope": scope,
                    "state": states[scope],
                    "required": bool(request.required) if request else False,
                    "purpose": request.purpose.model_dump() if request else None,
                }
            )
        with _atomic(self.conn):
            receipt = self._issue(brand, member, ts, purposes)
            for item in purposes:
                purpose = None if item["purpose"] is None else canonical_json(item["purpose"]).decode()
                self.conn.execute(
                    "INSERT INTO consent_states"
                    " (brand_id, member, scope, state, purpose, changed_at, receipt_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(brand_id, member, scope) DO UPDATE SET state = excluded.state,"
                    " purpose = excluded.purpose, changed_at = excluded.changed_at,"
                    " receipt_id = excluded.receipt_id",
                    (brand.id, member, item["scope"], item["state"], purpose, ts, receipt.id),
                )
                self.conn.execute(
                    "INSERT INTO consent_events (ts, brand_id, member, scope, state, purpose, receipt_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (ts, brand.id, member, item["scope"], item["state"], purpose, receipt.id),
                )
        return receipt

    def remember_answer(self, brand: Manifest, member: str, scope: str, answer: Answer) -> AnswerOutcome:
        """Apply a member's answer to a brand's request for ``scope``; what to do now.

        ``"always"`` grants (``member`` may be :data:`HOUSEHOLD` to grant it to all),
        ``"no"`` denies, ``"once"`` changes nothing and issues no receipt.
        """
        check_member(member)
        _check_scopes([scope])
        if answer == "once":
            return AnswerOutcome(disclose=True, basis="once", receipt=None)
        if answer == "always":
            receipt = self.grant(brand, member, [scope])
            return AnswerOutcome(disclose=True, basis=receipt.id, receipt=receipt)
        if answer == "no":
            return AnswerOutcome(disclose=False, basis=None, receipt=self.deny(brand, member, [scope]))
        raise ValueError(f"answer {answer!r} is unknown; expected one of {', '.join(ANSWERS)}")

    def _issue(self, brand: Manifest, member: str, ts: int, purposes: list[dict[str, Any]]) -> Receipt:
        row = self.conn.execute(
            "SELECT id FROM consent_receipts WHERE brand_id = ? AND member = ? ORDER BY n DESC LIMIT 1",
            (brand.id, member),
        ).fetchone()
        record: dict[str, Any] = {
            "version": RECEIPT_VERSION,
            "receipt_id": new_id(),
            "timestamp": ts,
            "jurisdiction": self.jurisdiction,
            "method": "explicit via Foyer hub",
            "consent_type": "explicit",
            "hub": {"id": self.hub_id, "sign_key": self.identity.public().sign},
            "controller": {
                "id": brand.id,
                "name": brand.name,
                "contact": [{"kind": c.kind, "value": c.value} for c in brand.contact],
            },
            "subject": {"member": member, "household_wide": member == HOUSEHOLD},
            "purposes": purposes,
            "termination": "revocable at any time from the Foyer hub",
            "previous_receipt_id": None if row is None else str(row[0]),
        }
        text = canonical_json(record)
        sig = b64encode(self.identity._sign(_RECEIPT_CONTEXT + text))
        # Store exactly the signed bytes, and return what they parse to: the record a verifier sees.
        record = json.loads(text)
        self.conn.execute(
            "INSERT INTO consent_receipts (id, brand_id, member, ts, record, sig, previous_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record["receipt_id"], brand.id, member, ts, text.decode(), sig, record["previous_receipt_id"]),
        )
        return Receipt(record, sig)

    # --- reading ------------------------------------------------------------------------------

    def granted(self, brand_id: str, member: str) -> frozenset[str]:
        """The scopes ``brand_id`` may receive from ``member``: its own choices over the household's."""
        check_member(member)
        rows = self.conn.execute(
            "SELECT member, scope, state FROM consent_states WHERE brand_id = ? AND member IN (?, ?)",
            (brand_id, member, HOUSEHOLD),
        ).fetchall()
        household = {str(r[1]): str(r[2]) for r in rows if r[0] == HOUSEHOLD}
        own = {str(r[1]): str(r[2]) for r in rows if r[0] == member and r[2] != "inherit"}
        effective = {**household, **own}
        return frozenset(scope for scope, state in effective.items() if state == "granted")

    def basis(self, brand_id: str, member: str, scope: str) -> str | None:
        """The receipt id of the grant that lets ``brand_id`` receive ``scope`` from ``member``, or None."""
        check_member(member)
        for who in (member, HOUSEHOLD) if member != HOUSEHOLD else (HOUSEHOLD,):
            row = self.conn.execute(
                "SELECT state, receipt_id FROM consent_states"
                " WHERE brand_id = ? AND member = ? AND scope = ?",
                (brand_id, who, scope),
            ).fetchone()
            if row is not None and row[0] != "inherit":
                return str(row[1]) if row[0] == "granted" else None
        return None

    def states(self, brand_id: str) -> list[ConsentState]:
        """Every current ``(member, scope)`` state for ``brand_id``, household first."""
        rows = self.conn.execute(
            "SELECT brand_id, member, scope, state, purpose, changed_at, receipt_id FROM consent_states"
            " WHERE brand_id = ? ORDER BY member != ?, member, scope",
            (brand_id, HOUSEHOLD),
        ).fetchall()
        return [
            ConsentState(r[0], r[1], r[2], r[3], None if r[4] is None else json.loads(r[4]), r[5], r[6])
            for r in rows
        ]

    def history(self, brand_id: str, member: str | None = None) -> list[ConsentEvent]:
        """Every change for ``brand_id`` (only ``member``'s when given), oldest first."""
        sql = (
            "SELECT ts, brand_id, member, scope, state, purpose, receipt_id FROM consent_events"
            " WHERE brand_id = ?"
        )
        params: tuple[str, ...] = (brand_id,)
        if member is not None:
            sql += " AND member = ?"
            params += (member,)
        rows = self.conn.execute(sql + " ORDER BY n", params).fetchall()
        return [
            ConsentEvent(r[0], r[1], r[2], r[3], r[4], None if r[5] is None else json.loads(r[5]), r[6])
            for r in rows
        ]

    def receipts(self, brand_id: str, member: str | None = None) -> list[Receipt]:
        """The receipts issued for ``brand_id`` (only ``member``'s when given), oldest first."""
        sql = "SELECT record, sig FROM consent_receipts WHERE brand_id = ?"
        params: tuple[str, ...] = (brand_id,)
        if member is not None:
            sql += " AND member = ?"
            params += (member,)
        rows = self.conn.execute(sql + " ORDER BY n", params).fetchall()
        return [Receipt(json.loads(r[0]), str(r[1])) for r in rows]

    def receipt(self, receipt_id: str) -> Receipt | None:
        row = self.conn.execute(
            "SELECT record, sig FROM consent_receipts WHERE id = ?", (receipt_id,)
        ).fetchone()
        return None if row is None else Receipt(json.loads(row[0]), str(row[1]))
