"""Consents (hub/consent.py): per brand, per member, per scope; signed receipts for every change.

- member choices override the household's, both ways, and ``inherit`` goes back;
- every change writes history and a receipt with the purpose stated *then*;
- receipts verify with the hub's public keys and fail once anything in them changes;
- answers to a brand's data request: once, always, no.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from hub.consent import (
    HOUSEHOLD,
    RECEIPT_VERSION,
    Consents,
    Receipt,
    check_member,
    receipt_message,
    verify_receipt,
)
from hub.crypto import Identity, b64decode, b64encode, canonical_json
from hub.privacy import gate
from hub.protocol import Manifest, now_ms
from hub.sqlite import connect_sqlite

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def manifest(purpose_fr: str = "Vous envoyer l'étiquette de retour.", **extra: Any) -> Manifest:
    data: dict[str, Any] = {
        "id": "sportissimo",
        "name": "Sportissimo",
        "description": {"fr": "Articles de sport", "en": "Sporting goods"},
        "scopes": [
            {"scope": "email", "purpose": {"fr": purpose_fr, "en": "Send you the return label."}},
            {
                "scope": "phone",
                "purpose": {"fr": "Vous rappeler.", "en": "Call you back."},
                "required": True,
            },
            {"scope": "postal_address", "purpose": {"fr": "Livrer.", "en": "Deliver."}},
        ],
        "contact": [
            {"kind": "email", "value": "service-client@sportissimo.example"},
            {"kind": "phone", "value": "+33 4 00 00 48 21"},
        ],
    }
    data.update(extra)
    return Manifest.model_validate(data)


BRAND = manifest()
OTHER = manifest(id="energie-claire", name="Énergie Claire")


@pytest.fixture
def identity() -> Identity:
    return Identity.generate()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def consents(conn: sqlite3.Connection, identity: Identity, clock: Clock) -> Consents:
    return Consents(conn, identity, "home-1", clock=clock)


# --- who is granted what ----------------------------------------------------------------------


def test_nothing_is_granted_until_someone_grants_it(consents: Consents) -> None:
    assert consents.granted("sportissimo", HOUSEHOLD) == frozenset()
    assert consents.granted("sportissimo", "alice") == frozenset()
    assert consents.basis("sportissimo", "alice", "email") is None
    assert consents.receipts("sportissimo") == []
    assert consents.history("sportissimo") == []


def test_a_household_grant_applies_to_every_member_and_only_to_that_brand(consents: Consents) -> None:
    consents.grant(BRAND, HOUSEHOLD, ["email", "phone"])
    for member in (HOUSEHOLD, "alice", "bob"):
        assert consents.granted("sportissimo", member) == {"email", "phone"}
    assert consents.granted("energie-claire", "alice") == frozenset()


def test_a_member_denial_or_revocation_overrides_the_household_grant_for_that_member_only(
    consents: Consents,
) -> None:
    consents.grant(BRAND, HOUSEHOLD, ["email", "phone"])
    consents.deny(BRAND, "alice", ["email"])
    consents.revoke(BRAND, "bob", ["phone"])
    assert consents.granted("sportissimo", "alice") == {"phone"}
    assert consents.granted("sportissimo", "bob") == {"email"}
    assert consents.granted("sportissimo", "carol") == {"email", "phone"}
    assert consents.granted("sportissimo", HOUSEHOLD) == {"email", "phone"}
    # The household revoking later does not undo Alice's own choice, and does not grant anything.
    consents.revoke(BRAND, HOUSEHOLD, ["email"])
    assert consents.granted("sportissimo", "alice") == {"phone"}
    assert consents.granted("sportissimo", "carol") == {"phone"}


def test_a_member_grant_adds_a_scope_the_household_did_not_grant_and_survives_household_changes(
    consents: Consents,
) -> None:
    consents.deny(BRAND, HOUSEHOLD, ["email"])
    consents.grant(BRAND, "alice", ["email"])
    assert consents.granted("sportissimo", "alice") == {"email"}
    assert consents.granted("sportissimo", "bob") == frozenset()
    consents.revoke(BRAND, HOUSEHOLD, ["email"])
    assert consents.granted("sportissimo", "alice") == {"email"}


def test_inherit_drops_the_members_choice_and_follows_the_household_again(consents: Consents) -> None:
    consents.grant(BRAND, HOUSEHOLD, ["email"])
    consents.deny(BRAND, "alice", ["email"])
    assert consents.granted("sportissimo", "alice") == frozenset()
    consents.inherit(BRAND, "alice", ["email"])
    assert consents.granted("sportissimo", "alice") == {"email"}
    consents.revoke(BRAND, HOUSEHOLD, ["email"])
    assert consents.granted("sportissimo", "alice") == frozenset()
    with pytest.raises(ValueError, match="nothing to inherit"):
        consents.inherit(BRAND, HOUSEHOLD, ["email"])


def test_a_revoked_grant_is_no_longer_granted_and_can_be_granted_again(consents: Consents) -> None:
    consents.grant(BRAND, "alice", ["email", "phone"])
    consents.revoke(BRAND, "alice", ["email"])
    assert consents.granted("sportissimo", "alice") == {"phone"}
    consents.grant(BRAND, "alice", ["email"])
    assert consents.granted("sportissimo", "alice") == {"email", "phone"}


def test_basis_names_the_receipt_of_the_grant_that_applies(consents: Consents) -> None:
    household = consents.grant(BRAND, HOUSEHOLD, ["email"])
    assert consents.basis("sportissimo", "alice", "email") == household.id
    own = consents.grant(BRAND, "alice", ["email"])
    assert consents.basis("sportissimo", "alice", "email") == own.id
    assert consents.basis("sportissimo", "bob", "email") == household.id
    consents.deny(BRAND, "bob", ["email"])
    assert consents.basis("sportissimo", "bob", "email") is None
    consents.inherit(BRAND, "bob", ["email"])
    assert consents.basis("sportissimo", "bob", "email") == household.id
    assert consents.basis("sportissimo", HOUSEHOLD, "phone") is None


def test_granted_scopes_drive_the_privacy_gate(consents: Consents) -> None:
    consents.grant(BRAND, HOUSEHOLD, ["email"])
    consents.deny(BRAND, "alice", ["email"])
    text = "Écrivez-moi à jean.dupont@exemple.fr svp"
    to_bob = gate(text, consents.granted("sportissimo", "bob"), "fr")
    to_alice = gate(text, consents.granted("sportissimo", "alice"), "fr")
    assert "jean.dupont@exemple.fr" in to_bob.text
    assert [f.kind for f in to_bob.disclosed] == ["email"]
    assert "jean.dupont@exemple.fr" not in to_alice.text
    assert [f.kind for f in to_alice.masked] == ["email"]


def test_bad_input_is_refused_and_nothing_is_written(consents: Consents) -> None:
    with pytest.raises(ValueError, match="does not ask for 'location'"):
        consents.grant(BRAND, "alice", ["email", "location"])
    with pytest.raises(ValueError, match="scope 'payment' is unknown"):
        consents.deny(BRAND, "alice", ["payment"])
    with pytest.raises(ValueError, match="member '' is not valid"):
        consents.grant(BRAND, "", ["email"])
    with pytest.raises(ValueError, match="no scope given"):
        consents.grant(BRAND, "alice", [])
    with pytest.raises(TypeError, match="is a string"):
        consents.grant(BRAND, "alice", "email")
    with pytest.raises(ValueError, match="state 'maybe'"):
        consents.change(BRAND, "alice", {"email": "maybe"})  # type: ignore[dict-item]
    assert consents.receipts("sportissimo") == []
    assert consents.history("sportissimo") == []
    assert check_member("alice@home") == "alice@home"
    with pytest.raises(ValueError, match="not valid"):
        check_member("a" * 65)


def test_denying_or_revoking_a_scope_the_manifest_does_not_ask_for_is_allowed(consents: Consents) -> None:
    receipt = consents.deny(BRAND, HOUSEHOLD, ["location"])
    assert receipt.record["purposes"] == [
        {"scope": "location", "state": "denied", "required": False, "purpose": None}
    ]


# --- history and receipts ---------------------------------------------------------------------


def test_every_change_is_in_the_history_with_its_time_and_the_purpose_stated_then(
    consents: Consents, clock: Clock
) -> None:
    first = consents.grant(BRAND, "alice", ["email"])
    clock.advance(60_000)
    updated = manifest(purpose_fr="Vous envoyer nos offres.")  # the brand changed its purpose
    second = consents.revoke(updated, "alice", ["email"])
    clock.advance(60_000)
    third = consents.grant(updated, HOUSEHOLD, ["email", "phone"])
    history = consents.history("sportissimo")
    assert [(e.ts, e.member, e.scope, e.state, e.receipt_id) for e in history] == [
        (T0, "alice", "email", "granted", first.id),
        (T0 + 60_000, "alice", "email", "revoked", second.id),
        (T0 + 120_000, HOUSEHOLD, "email", "granted", third.id),
        (T0 + 120_000, HOUSEHOLD, "phone", "granted", third.id),
    ]
    assert history[0].purpose == {
        "fr": "Vous envoyer l'étiquette de retour.",
        "en": "Send you the return label.",
    }
    assert history[1].purpose is not None
    assert history[1].purpose["fr"] == "Vous envoyer nos offres."
    assert [e.scope for e in consents.history("sportissimo", "alice")] == ["email", "email"]
    states = {
        (s.member, s.scope): (s.state, s.changed_at, s.receipt_id) for s in consents.states("sportissimo")
    }
    assert states == {
        (HOUSEHOLD, "email"): ("granted", T0 + 120_000, third.id),
        (HOUSEHOLD, "phone"): ("granted", T0 + 120_000, third.id),
        ("alice", "email"): ("revoked", T0 + 60_000, second.id),
    }


def test_a_receipt_says_who_consented_to_whom_for_what_and_chains_to_the_previous_one(
    consents: Consents, identity: Identity, clock: Clock
) -> None:
    first = consents.grant(BRAND, "alice", ["phone", "email"])
    clock.advance(1000)
    second = consents.revoke(BRAND, "alice", ["email"])
    household = consents.grant(BRAND, HOUSEHOLD, ["email"])
    record = first.record
    assert record["version"] == RECEIPT_VERSION
    assert record["receipt_id"] == first.id
    assert len(first.id) == 36
    assert first.id[14] == "7"
    assert record["timestamp"] == T0 == first.ts
    assert record["jurisdiction"] == "FR"
    assert record["method"] == "explicit via Foyer hub"
    assert record["hub"] == {"id": "home-1", "sign_key": identity.public().sign}
    assert record["controller"] == {
        "id": "sportissimo",
        "name": "Sportissimo",
        "contact": [
            {"kind": "email", "value": "service-client@sportissimo.example"},
            {"kind": "phone", "value": "+33 4 00 00 48 21"},
        ],
    }
    assert record["subject"] == {"member": "alice", "household_wide": False}
    assert record["purposes"] == [
        {
            "scope": "email",
            "state": "granted",
            "required": False,
            "purpose": {"fr": "Vous envoyer l'étiquette de retour.", "en": "Send you the return label."},
        },
        {
            "scope": "phone",
            "state": "granted",
            "required": True,
            "purpose": {"fr": "Vous rappeler.", "en": "Call you back."},
        },
    ]
    assert record["previous_receipt_id"] is None
    assert second.record["previous_receipt_id"] == first.id
    assert second.record["purposes"][0]["state"] == "revoked"
    assert household.record["previous_receipt_id"] is None  # a chain per subject
    assert household.record["subject"] == {"member": HOUSEHOLD, "household_wide": True}
    assert [r.id for r in consents.receipts("sportissimo")] == [first.id, second.id, household.id]
    assert [r.id for r in consents.receipts("sportissimo", "alice")] == [first.id, second.id]
    assert consents.receipt(second.id) == second
    assert consents.receipt("nope") is None
    json.dumps(first.as_dict())  # exportable as is


def test_receipts_verify_with_the_hub_keys_and_only_with_them(consents: Consents, identity: Identity) -> None:
    receipt = consents.grant(BRAND, "alice", ["email"])
    keys = identity.public()
    assert verify_receipt(receipt.record, receipt.sig, keys)
    assert verify_receipt(receipt.record, receipt.sig, keys.sign)
    other = Identity.generate().public()
    assert not verify_receipt(receipt.record, receipt.sig, other)
    assert verify_receipt(receipt.record, receipt.sig, [other, keys])  # current and previous keys
    assert not verify_receipt(receipt.record, receipt.sig, [])
    # the key written in the record is not trusted: a forger's own key does not help
    forger = Identity.generate()
    forged = {**receipt.record, "hub": {"id": "home-1", "sign_key": forger.public().sign}}
    forged_sig = b64encode(forger._sign(receipt_message(forged)))
    assert not verify_receipt(forged, forged_sig, keys)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r["purposes"][0].update(state="denied"),
        lambda r: r["purposes"][0].update(scope="phone"),
        lambda r: r["purposes"][0]["purpose"].update(fr="Autre chose."),
        lambda r: r.update(timestamp=r["timestamp"] + 1),
        lambda r: r["subject"].update(member="bob"),
        lambda r: r["controller"].update(id="energie-claire"),
        lambda r: r.update(previous_receipt_id="0192aaaa-0000-7000-8000-000000000000"),
        lambda r: r.update(extra="field"),
        lambda r: r.pop("jurisdiction"),
        lambda r: r["purposes"].append({"scope": "phone", "state": "granted"}),
    ],
    ids=["state", "scope", "purpose", "timestamp", "subject", "controller", "previous", "added", "removed",
         "appended"],
)  # fmt: skip
def test_a_modified_receipt_does_not_verify(consents: Consents, identity: Identity, tamper: Any) -> None:
    receipt = consents.grant(BRAND, "alice", ["email"])
    record = copy.deepcopy(receipt.record)
    tamper(record)
    assert not verify_receipt(record, receipt.sig, identity.public())
    assert verify_receipt(receipt.record, receipt.sig, identity.public())  # the original still does


@pytest.mark.parametrize(
    "sig",
    ["", "not base64!", "AAAA", b64encode(b"\x00" * 64), 12, None],
)
def test_a_malformed_signature_or_record_is_false_not_an_exception(
    consents: Consents, identity: Identity, sig: Any
) -> None:
    receipt = consents.grant(BRAND, "alice", ["email"])
    assert not verify_receipt(receipt.record, sig, identity.public())
    assert not verify_receipt({"timestamp": 1.5}, receipt.sig, identity.public())  # floats: no canonical form
    assert not verify_receipt(receipt.record, receipt.sig, ["not a key"])
    assert not verify_receipt("not a record", receipt.sig, identity.public())  # type: ignore[arg-type]


def test_the_signature_covers_exactly_the_canonical_record_with_a_context(
    consents: Consents, identity: Identity
) -> None:
    receipt = consents.grant(BRAND, "alice", ["email"])
    message = receipt_message(receipt.record)
    assert message == b"foyer-consent-receipt-v1\x00" + canonical_json(receipt.record)
    nacl.signing.VerifyKey(b64decode(identity.public().sign)).verify(message, b64decode(receipt.sig))
    # Key order does not matter: the canonical form is what is signed.
    shuffled = dict(reversed(list(receipt.record.items())))
    assert verify_receipt(shuffled, receipt.sig, identity.public())


def test_receipts_and_consents_survive_a_restart_and_still_verify(
    tmp_path: Path, identity: Identity, clock: Clock
) -> None:
    conn = connect_sqlite(tmp_path / "hub.db")
    receipt = Consents(conn, identity, "home-1", clock=clock).grant(BRAND, "alice", ["email"])
    conn.close()
    conn = connect_sqlite(tmp_path / "hub.db")
    reopened = Consents(conn, identity, "home-1", clock=clock)
    assert reopened.granted("sportissimo", "alice") == {"email"}
    (stored,) = reopened.receipts("sportissimo")
    assert stored == receipt
    assert verify_receipt(stored.record, stored.sig, identity.public())
    raw = conn.execute("SELECT record FROM consent_receipts").fetchone()[0]
    assert raw.encode() == canonical_json(stored.record)  # stored exactly as signed
    conn.close()


# --- answers to data requests -----------------------------------------------------------------


def test_answer_once_discloses_without_changing_consent(consents: Consents) -> None:
    outcome = consents.remember_answer(BRAND, "alice", "email", "once")
    assert outcome.disclose
    assert outcome.basis == "once"
    assert outcome.receipt is None
    assert consents.granted("sportissimo", "alice") == frozenset()
    assert consents.receipts("sportissimo") == []


def test_answer_always_grants_and_names_the_receipt(consents: Consents) -> None:
    outcome = consents.remember_answer(BRAND, "alice", "email", "always")
    assert outcome.disclose
    assert isinstance(outcome.receipt, Receipt)
    assert outcome.basis == outcome.receipt.id == consents.basis("sportissimo", "alice", "email")
    assert consents.granted("sportissimo", "alice") == {"email"}
    assert consents.granted("sportissimo", "bob") == frozenset()
    everyone = consents.remember_answer(BRAND, HOUSEHOLD, "phone", "always")
    assert everyone.disclose
    assert consents.granted("sportissimo", "bob") == {"phone"}


def test_answer_no_denies_and_overrides_a_household_grant(consents: Consents) -> None:
    consents.grant(BRAND, HOUSEHOLD, ["email"])
    outcome = consents.remember_answer(BRAND, "alice", "email", "no")
    assert not outcome.disclose
    assert outcome.basis is None
    assert outcome.receipt is not None
    assert outcome.receipt.record["purposes"][0]["state"] == "denied"
    assert consents.granted("sportissimo", "alice") == frozenset()


def test_answers_are_checked(consents: Consents) -> None:
    with pytest.raises(ValueError, match="answer 'maybe'"):
        consents.remember_answer(BRAND, "alice", "email", "maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scope 'iban'"):
        consents.remember_answer(BRAND, "alice", "iban", "once")
    with pytest.raises(ValueError, match="does not ask for 'location'"):
        consents.remember_answer(BRAND, "alice", "location", "always")


# --- transactions -----------------------------------------------------------------------------


def test_a_change_joins_the_callers_transaction_and_rolls_back_with_it(
    conn: sqlite3.Connection, consents: Consents
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    consents.grant(BRAND, "alice", ["email"])
    assert conn.in_transaction
    conn.execute("ROLLBACK")
    assert consents.granted("sportissimo", "alice") == frozenset()
    assert consents.receipts("sportissimo") == []
    assert consents.history("sportissimo") == []


def test_a_change_commits_on_its_own_and_is_seen_by_another_connection(
    tmp_path: Path, consents: Consents
) -> None:
    consents.grant(BRAND, "alice", ["email"])
    other = sqlite3.connect(tmp_path / "hub.db")
    try:
        assert other.execute("SELECT COUNT(*) FROM consent_receipts").fetchone()[0] == 1
    finally:
        other.close()


def test_a_legacy_mode_connection_works_too(tmp_path: Path, identity: Identity) -> None:
    legacy = sqlite3.connect(tmp_path / "legacy.db")  # default isolation_level, tuple rows
    try:
        consents = Consents(legacy, identity, "home-1")
        receipt = consents.grant(OTHER, HOUSEHOLD, ["email"])
        assert consents.granted("energie-claire", "bob") == {"email"}
        assert abs(receipt.ts - now_ms()) < 60_000
        assert not legacy.in_transaction
    finally:
        legacy.close()
