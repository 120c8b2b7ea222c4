"""The disclosure ledger (hub/ledger.py): append-only, hash-chained, erasable per brand.

- what a brand knows, per scope, with the values themselves;
- any raw SQL edit of the file (a value, a date, a brand, a deleted, moved or
  emptied row, the head) makes ``verify`` fail at the right entry;
- erasing a brand removes its values from the database file and its WAL, and
  the chain still verifies; faking an erasure does not.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from hub.ledger import GENESIS, Ledger, entry_hash, mask_hint, value_digest
from hub.privacy import gate
from hub.sqlite import connect_sqlite

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
RECEIPT = "0192f0c4-1c2b-7d3e-8f40-123456789abc"


class Clock:
    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1000  # every reading a second later: entries get distinct times
        return self.now


@pytest.fixture
def ledger(conn: sqlite3.Connection) -> Ledger:
    return Ledger(conn, clock=Clock())


def fill(ledger: Ledger) -> None:
    """Five entries: three for sportissimo, two for energie-claire."""
    ledger.append(
        "sportissimo", "alice", "email", "jean.dupont@exemple.fr", basis=RECEIPT, envelope_id="env-0001"
    )
    ledger.append("energie-claire", "bob", "phone", "06 12 34 56 78", basis="once", envelope_id="env-0002")
    ledger.append(
        "sportissimo", "alice", "email", "jean.dupont@exemple.fr", basis=RECEIPT, envelope_id="env-0003"
    )
    ledger.append("sportissimo", "bob", "postal_address", "12 rue de la Paix, 75002 Paris", basis="once")
    ledger.append("energie-claire", "household", "customer_number", "EC-99812", basis=RECEIPT)


def raw(db: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """Edit the file behind the ledger's back, as someone with the file would."""
    other = sqlite3.connect(db)
    try:
        other.execute(sql, params)
        other.commit()
    finally:
        other.close()


# --- recording and reading --------------------------------------------------------------------


def test_an_empty_ledger_verifies(ledger: Ledger) -> None:
    result = ledger.verify()
    assert result.ok
    assert result.first_bad_seq is None
    assert result.checked == 0
    assert ledger.head() is None
    assert ledger.entries() == []


def test_entries_are_numbered_chained_and_keep_the_value(ledger: Ledger) -> None:
    fill(ledger)
    entries = ledger.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(entries))
    first = entries[0]
    assert (first.ts, first.brand_id, first.member, first.scope, first.kind) == (
        T0 + 1000,
        "sportissimo",
        "alice",
        "email",
        "email",
    )
    assert (first.value, first.hint, first.basis, first.envelope_id) == (
        "jean.dupont@exemple.fr",
        "j***@exemple.fr",
        RECEIPT,
        "env-0001",
    )
    assert ledger.head() == (5, entries[-1].hash)
    assert [e.seq for e in ledger.entries("energie-claire")] == [2, 5]
    assert [e.seq for e in ledger.entries(since_seq=3)] == [4, 5]
    assert ledger.verify().ok
    assert ledger.verify().checked == 5


def test_the_hash_is_sha256_over_the_canonical_fields_and_the_previous_hash(
    ledger: Ledger, conn: sqlite3.Connection
) -> None:
    entry = ledger.append("sportissimo", "alice", "email", "a@b.fr", basis="once")
    nonce = conn.execute("SELECT nonce FROM ledger WHERE seq = 1").fetchone()[0]
    assert len(nonce) == 64
    assert entry.value_digest == value_digest(nonce, "a@b.fr")
    assert entry.hash == entry_hash(
        seq=1,
        ts=entry.ts,
        op="disclose",
        brand_id="sportissimo",
        member="alice",
        scope="email",
        kind="email",
        basis="once",
        envelope_id=None,
        value_digest=entry.value_digest,
        prev_hash=GENESIS,
    )


def test_what_a_brand_knows_is_summarised_per_scope(ledger: Ledger) -> None:
    fill(ledger)
    ledger.append("sportissimo", "bob", "email", "bob@exemple.fr", basis="once")
    knows = ledger.what_brand_knows("sportissimo")
    assert set(knows) == {"email", "postal_address"}
    email = knows["email"]
    assert (email.first_disclosed, email.last_disclosed, email.count) == (T0 + 1000, T0 + 6000, 3)
    assert email.values == ("jean.dupont@exemple.fr", "bob@exemple.fr")
    assert email.hints == ("j***@exemple.fr", "b***@exemple.fr")
    assert knows["postal_address"].values == ("12 rue de la Paix, 75002 Paris",)
    assert knows["postal_address"].hints == ("*** 75002 Paris",)
    assert ledger.what_brand_knows("energie-claire")["phone"].hints == ("***78",)
    assert ledger.what_brand_knows("unknown-brand") == {}


def test_gate_findings_are_recorded_with_their_values_and_consent_basis(ledger: Ledger) -> None:
    text = "Mon e-mail : jean@exemple.fr, mon téléphone : 06 12 34 56 78, IBAN FR7630006000011234567890189"
    result = gate(text, {"email", "phone"}, "fr")
    entries = ledger.append_findings(
        "sportissimo", "alice", text, result.disclosed, basis={"email": RECEIPT, "phone": "once"},
        envelope_id="env-0042",
    )  # fmt: skip
    assert [(e.kind, e.value, e.basis, e.envelope_id) for e in entries] == [
        ("email", "jean@exemple.fr", RECEIPT, "env-0042"),
        ("phone", "06 12 34 56 78", "once", "env-0042"),
    ]
    assert "FR76" not in str(ledger.entries())  # the IBAN was masked, so it was not disclosed
    with pytest.raises(ValueError, match="no consent basis given for scope 'phone'"):
        ledger.append_findings("sportissimo", "alice", text, result.disclosed, basis={"email": RECEIPT})
    assert len(ledger.entries()) == 2  # nothing of the refused batch was written
    assert (
        ledger.append_findings("sportissimo", "alice", text, result.disclosed, basis="once")[0].basis
        == "once"
    )


def test_bad_input_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="brand id"):
        ledger.append("Not A Brand", "alice", "email", "a@b.fr", basis="once")
    with pytest.raises(ValueError, match="member"):
        ledger.append("sportissimo", "", "email", "a@b.fr", basis="once")
    with pytest.raises(ValueError, match="scope"):
        ledger.append("sportissimo", "alice", "E-mail!", "a@b.fr", basis="once")
    with pytest.raises(ValueError, match="basis"):
        ledger.append("sportissimo", "alice", "email", "a@b.fr", basis="")
    with pytest.raises(ValueError, match="basis"):
        ledger.append("sportissimo", "alice", "email", "a@b.fr", basis="erase")
    with pytest.raises(ValueError, match="value"):
        ledger.append("sportissimo", "alice", "email", "", basis="once")
    assert ledger.entries() == []


@pytest.mark.parametrize(
    ("kind", "value", "hint"),
    [
        ("email", "jean.dupont@exemple.fr", "j***@exemple.fr"),
        ("phone", "+33 6 12 34 56 78", "***78"),
        ("postal_address", "3 bis av. Foch 69006 Lyon", "*** 69006 Lyon"),
        ("postal_address", "221B Baker Street", "***"),
        ("customer_number", "EC-99812", "E***12"),
        ("first_name", "Jo", "***"),
    ],
)
def test_hints_mask_the_value(kind: str, value: str, hint: str) -> None:
    assert mask_hint(kind, value) == hint


# --- tampering --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "bad_seq"),
    [
        ("UPDATE ledger SET value = 'autre@exemple.fr' WHERE seq = 3", 3),
        ("UPDATE ledger SET ts = ts + 1 WHERE seq = 2", 2),
        ("UPDATE ledger SET brand_id = 'energie-claire' WHERE seq = 4", 4),
        ("UPDATE ledger SET member = 'bob' WHERE seq = 1", 1),
        ("UPDATE ledger SET basis = 'once' WHERE seq = 1", 1),
        ("UPDATE ledger SET envelope_id = NULL WHERE seq = 1", 1),
        ("UPDATE ledger SET scope = 'phone' WHERE seq = 5", 5),
        ("UPDATE ledger SET nonce = '00' WHERE seq = 2", 2),
        ("UPDATE ledger SET nonce = 'zz' WHERE seq = 2", 2),
        ("UPDATE ledger SET hash = prev_hash WHERE seq = 2", 2),
        ("UPDATE ledger SET op = 'erase' WHERE seq = 2", 2),
        ("UPDATE ledger SET op = 'other' WHERE seq = 2", 2),
        ("UPDATE ledger SET ts = 1.5 WHERE seq = 2", 2),
        ("DELETE FROM ledger WHERE seq = 3", 3),
        ("DELETE FROM ledger WHERE seq = 1", 1),
        ("DELETE FROM ledger WHERE seq = 5", 5),
        ("DELETE FROM ledger WHERE seq >= 4", 4),
        ("DELETE FROM ledger", 1),
        ("DELETE FROM ledger_head", 1),
        ("UPDATE ledger_head SET seq = 4", 4),
        # a value removed as if erased, but no erasure of the brand is on record
        ("UPDATE ledger SET value = NULL, nonce = NULL, erased_at = 1 WHERE seq = 4", 4),
        ("UPDATE ledger SET value = NULL WHERE seq = 4", 4),
    ],
)
def test_any_raw_edit_of_the_file_makes_verify_fail_at_that_entry(
    ledger: Ledger, db: Path, sql: str, bad_seq: int
) -> None:
    fill(ledger)
    assert ledger.verify().ok
    raw(db, sql)
    result = ledger.verify()
    assert not result.ok
    assert result.first_bad_seq == bad_seq, result.reason
    assert result.reason


def test_a_value_edited_together_with_its_digest_still_breaks_the_chain(
    ledger: Ledger, db: Path, conn: sqlite3.Connection
) -> None:
    fill(ledger)
    nonce = conn.execute("SELECT nonce FROM ledger WHERE seq = 3").fetchone()[0]
    raw(db, "UPDATE ledger SET value = ?, value_digest = ? WHERE seq = 3",
        ("autre@exemple.fr", value_digest(nonce, "autre@exemple.fr")))  # fmt: skip
    result = ledger.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "hash does not match" in result.reason


def test_reordering_rows_breaks_the_chain(ledger: Ledger, db: Path) -> None:
    fill(ledger)
    raw(db, "UPDATE ledger SET seq = 100 WHERE seq = 2")
    raw(db, "UPDATE ledger SET seq = 2 WHERE seq = 3")
    raw(db, "UPDATE ledger SET seq = 3 WHERE seq = 100")
    result = ledger.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_swapping_two_values_breaks_the_chain(ledger: Ledger, db: Path) -> None:
    fill(ledger)
    raw(db, "UPDATE ledger SET value = (SELECT value FROM ledger WHERE seq = 2),"
        " nonce = (SELECT nonce FROM ledger WHERE seq = 2) WHERE seq = 1")  # fmt: skip
    assert ledger.verify().first_bad_seq == 1


def test_a_rewritten_tail_passes_alone_but_not_against_an_anchored_head(ledger: Ledger, db: Path) -> None:
    fill(ledger)
    anchor = ledger.head()
    assert anchor is not None
    assert ledger.verify(expected_head=anchor).ok
    previous = ledger.entries()[3]
    # Someone with the file deletes the last entry and rewinds the head consistently: the
    # documented limit of an unkeyed chain. An anchor kept elsewhere catches it.
    raw(db, "DELETE FROM ledger WHERE seq = 5")
    raw(db, "UPDATE ledger_head SET seq = 4, hash = ?", (previous.hash,))
    assert ledger.verify().ok
    result = ledger.verify(expected_head=anchor)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert not ledger.verify(expected_head=(1, "0" * 64)).ok


# --- erasure ----------------------------------------------------------------------------------


def test_erasing_a_brand_removes_its_values_and_keeps_the_chain_verifiable(ledger: Ledger) -> None:
    fill(ledger)
    assert ledger.erase_brand("sportissimo", member="alice") == 3
    result = ledger.verify()
    assert result.ok, result.reason
    assert result.checked == 6
    gone = ledger.entries("sportissimo")
    assert [e.seq for e in gone] == [1, 3, 4, 6]
    assert all(e.value is None and e.hint is None and e.erased_at is not None for e in gone[:3])
    assert [(e.scope, e.kind) for e in gone[:3]] == [
        ("email", "email"),
        ("email", "email"),
        ("postal_address", "postal_address"),
    ]  # the record that something was given stays; what it was does not
    erase = gone[3]
    assert (erase.op, erase.member, erase.kind, erase.value, erase.basis) == (
        "erase",
        "alice",
        "erasure",
        "3",
        "erase",
    )
    assert ledger.what_brand_knows("sportissimo") == {}
    assert ledger.what_brand_knows("energie-claire")["phone"].values == ("06 12 34 56 78",)
    assert all(e.value is not None for e in ledger.entries("energie-claire"))


def test_nothing_of_the_erased_values_remains_in_the_database_files(ledger: Ledger, db: Path) -> None:
    fill(ledger)
    secrets = [b"jean.dupont@exemple.fr", b"12 rue de la Paix"]
    files = [db, db.with_name(db.name + "-wal")]
    assert any(s in p.read_bytes() for s in secrets for p in files if p.exists())
    ledger.erase_brand("sportissimo")
    for path in files:
        if path.exists():
            content = path.read_bytes()
            for secret in secrets:
                assert secret not in content, f"{secret!r} is still in {path.name}"
    assert b"06 12 34 56 78" in b"".join(p.read_bytes() for p in files if p.exists())  # other brand kept


def test_disclosures_after_an_erasure_are_recorded_and_cannot_be_erased_silently(
    ledger: Ledger, db: Path
) -> None:
    fill(ledger)
    ledger.erase_brand("sportissimo")
    ledger.append("sportissimo", "alice", "email", "nouveau@exemple.fr", basis="once")
    assert ledger.verify().ok
    assert ledger.what_brand_knows("sportissimo")["email"].values == ("nouveau@exemple.fr",)
    raw(db, "UPDATE ledger SET value = NULL, nonce = NULL, erased_at = 1 WHERE seq = 7")
    result = ledger.verify()
    assert (result.ok, result.first_bad_seq) == (False, 7)
    assert "no erasure" in result.reason


def test_the_erase_entry_itself_is_protected(ledger: Ledger, db: Path) -> None:
    fill(ledger)
    ledger.erase_brand("sportissimo")
    raw(db, "DELETE FROM ledger WHERE seq = 6")
    assert not ledger.verify().ok
    raw(db, "UPDATE ledger_head SET seq = 5, hash = (SELECT hash FROM ledger WHERE seq = 5)")
    result = ledger.verify()  # without its erase entry the empty values are unexplained
    assert (result.ok, result.first_bad_seq) == (False, 1)


def test_erasing_twice_or_an_unknown_brand_is_recorded_and_harmless(ledger: Ledger) -> None:
    fill(ledger)
    assert ledger.erase_brand("sportissimo") == 3
    assert ledger.erase_brand("sportissimo") == 0
    assert ledger.erase_brand("never-seen") == 0
    assert [e.value for e in ledger.entries() if e.op == "erase"] == ["3", "0", "0"]
    assert ledger.verify().ok


def test_an_erasure_in_the_callers_transaction_rolls_back_with_it(
    ledger: Ledger, conn: sqlite3.Connection
) -> None:
    fill(ledger)
    conn.execute("BEGIN IMMEDIATE")
    ledger.erase_brand("sportissimo")
    conn.execute("ROLLBACK")
    assert ledger.what_brand_knows("sportissimo")["email"].count == 2
    assert ledger.head() is not None
    assert ledger.head() == (5, ledger.entries()[-1].hash)
    assert ledger.verify().ok
    conn.execute("BEGIN IMMEDIATE")
    ledger.erase_brand("sportissimo")
    with pytest.raises(RuntimeError, match="commit first"):
        ledger.purge_files()
    conn.execute("COMMIT")
    assert ledger.purge_files()
    assert ledger.verify().ok


def test_secure_delete_is_restored_after_an_erasure(ledger: Ledger, conn: sqlite3.Connection) -> None:
    before = conn.execute("PRAGMA secure_delete").fetchone()[0]
    ledger.erase_brand("sportissimo")
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == before


# --- several writers --------------------------------------------------------------------------


def test_two_connections_appending_in_turn_keep_one_chain(db: Path, ledger: Ledger) -> None:
    other_conn = connect_sqlite(db)
    try:
        other = Ledger(other_conn, clock=Clock())
        for i in range(10):
            (ledger if i % 2 else other).append(
                "sportissimo", "alice", "email", f"a{i}@exemple.fr", basis="once"
            )
        assert [e.seq for e in ledger.entries()] == list(range(1, 11))
        assert ledger.verify().ok
        assert other.verify().ok
    finally:
        other_conn.close()


def test_a_legacy_mode_connection_works_too(tmp_path: Path) -> None:
    legacy = sqlite3.connect(tmp_path / "legacy.db")
    try:
        ledger = Ledger(legacy)
        ledger.append("sportissimo", "alice", "email", "a@b.fr", basis="once")
        assert not legacy.in_transaction
        assert ledger.erase_brand("sportissimo") == 1
        assert ledger.verify().ok
    finally:
        legacy.close()
