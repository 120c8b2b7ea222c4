"""End-to-end sealing, signatures, key files, rotation and the replay guard (hub/crypto.py)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import sqlite3
import stat
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.crypto import (
    DEFAULT_FUTURE_SKEW_MS,
    DEFAULT_WINDOW_MS,
    BadSignature,
    CannotOpen,
    ExpiredEnvelope,
    Header,
    Identity,
    KeyFileError,
    PublicKeys,
    ReplayedEnvelope,
    ReplayGuard,
    SecurityError,
    UnknownKey,
    b64decode,
    b64encode,
    canonical_json,
    open_sealed,
    seal,
    sign_only,
    signature_input,
    verify_rotation,
    verify_signed,
)
from hub.errors import ProtocolError
from hub.protocol import Envelope, MessageBody, new_id

HUB = Identity.generate()
BRAND = Identity.generate()
OTHER = Identity.generate()
NOW = 1_795_428_900_035
BODY = json.dumps({"text": "Où en est ma commande 4471 ?", "lang": "fr", "data": {}}).encode()


def header(**changes: Any) -> Header:
    base = Header(
        v=2,
        id="01a207e6-dcc3-77c1-aa81-38fbd84fb7d9",
        type="message",
        sender="home-7f3a",
        recipient="acme",
        conversation="01a207e6-dca0-7b16-90a5-db15fd1016bf",
        ts=NOW,
    )
    return dataclasses.replace(base, **changes)


def sealed_message(hdr: Header | None = None, body: bytes = BODY) -> tuple[Header, str, str]:
    """A message from the hub to the brand: ``(header, sealed, sig)``."""
    hdr = hdr or header()
    sealed, sig = seal(body, hdr, HUB, BRAND.public().box)
    return hdr, sealed, sig


def flip_bit(text: str, index: int, bit: int = 0) -> str:
    raw = bytearray(b64decode(text))
    raw[index % len(raw)] ^= 1 << bit
    return b64encode(bytes(raw))


# --- sealing and signing ----------------------------------------------------------------------


def test_round_trip() -> None:
    hdr, sealed, sig = sealed_message()
    assert open_sealed(sealed, sig, hdr, HUB.public().sign, BRAND) == BODY
    assert len(b64decode(sealed)) == len(BODY) + 48
    assert len(sig) == 86
    assert "=" not in sig + sealed
    again, _ = seal(BODY, hdr, HUB, BRAND.public().box)
    assert again != sealed, "a sealed box uses a fresh ephemeral key every time"


def test_header_from_an_envelope_and_from_raw_json() -> None:
    env = Envelope(
        type="message",
        sender="home-7f3a",
        recipient="acme",
        conversation=new_id(),
        body=MessageBody(text="bonjour"),
    )
    hdr = Header.of(env)
    assert hdr == Header.from_mapping(json.loads(env.encode()))
    assert hdr.ref is None
    assert hdr.recipient == "acme"
    sealed, sig = seal(BODY, hdr, HUB, BRAND.public().box)
    assert open_sealed(sealed, sig, hdr, HUB.public().sign, BRAND) == BODY


@pytest.mark.parametrize("index", [0, 5, 31, 32, 47, 48, 60, -1])
def test_tampered_ciphertext_is_a_bad_signature(index: int) -> None:
    hdr, sealed, sig = sealed_message()
    with pytest.raises(BadSignature, match=hdr.id):
        open_sealed(flip_bit(sealed, index), sig, hdr, HUB.public().sign, BRAND)


@pytest.mark.parametrize(
    "changes",
    [
        {"conversation": "01a207e6-dca0-7b16-90a5-db15fd1016bg"},
        {"conversation": None},
        {"ref": "01a207e6-dcc3-77c1-aa81-38fbd84fb7d9"},
        {"ts": NOW + 1},
        {"sender": "home-7f3b"},
        {"recipient": "acme2"},
        {"recipient": None},
        {"id": "01a207e6-dcc3-77c1-aa81-38fbd84fb7da"},
        {"type": "reply"},
        {"v": 1},
        # a field moved to its neighbour: same strings, different positions
        {"recipient": None, "conversation": "acme", "ref": "01a207e6-dca0-7b16-90a5-db15fd1016bf"},
    ],
)
def test_tampered_header_is_a_bad_signature(changes: dict[str, Any]) -> None:
    hdr, sealed, sig = sealed_message()
    with pytest.raises(BadSignature):
        open_sealed(sealed, sig, dataclasses.replace(hdr, **changes), HUB.public().sign, BRAND)


def test_tampered_signature_is_a_bad_signature() -> None:
    hdr, sealed, sig = sealed_message()
    for index in (0, 31, 32, 63):
        with pytest.raises(BadSignature):
            open_sealed(sealed, flip_bit(sig, index, bit=7), hdr, HUB.public().sign, BRAND)
    with pytest.raises(BadSignature, match="not base64url"):
        open_sealed(sealed, sig + "=", hdr, HUB.public().sign, BRAND)
    with pytest.raises(BadSignature, match="bytes"):
        open_sealed(sealed, b64encode(b64decode(sig)[:60]), hdr, HUB.public().sign, BRAND)


def test_wrong_signer_is_a_bad_signature() -> None:
    hdr = header()
    sealed, sig = seal(BODY, hdr, OTHER, BRAND.public().box)  # OTHER pretends to be the hub
    with pytest.raises(BadSignature, match="does not verify") as caught:
        open_sealed(sealed, sig, hdr, HUB.public().sign, BRAND)
    assert caught.value.envelope_id == hdr.id
    assert caught.value.code == "bad_signature"


def test_sealed_for_another_recipient_cannot_be_opened() -> None:
    hdr = header()
    sealed, sig = seal(BODY, hdr, HUB, OTHER.public().box)
    with pytest.raises(CannotOpen, match=BRAND.public().box) as caught:
        open_sealed(sealed, sig, hdr, HUB.public().sign, BRAND)
    assert caught.value.code == "cannot_open"
    assert hdr.id in str(caught.value)


def test_a_too_short_ciphertext_that_is_signed_cannot_be_opened() -> None:
    hdr = header()
    sig = b64encode(HUB._sign(signature_input(hdr, "sealed", b"short")))
    with pytest.raises(CannotOpen):
        open_sealed(b64encode(b"short"), sig, hdr, HUB.public().sign, BRAND)


def test_bad_keys_are_unknown_keys() -> None:
    hdr, sealed, sig = sealed_message()
    for bad in ("", "not a key", HUB.public().sign[:-1], b64encode(bytes(33))):
        with pytest.raises(UnknownKey, match=hdr.id) as caught:
            open_sealed(sealed, sig, hdr, bad, BRAND)
        assert caught.value.code == "unknown_key"
        with pytest.raises(UnknownKey, match=hdr.id):
            seal(BODY, hdr, HUB, bad)
    with pytest.raises(UnknownKey, match="lack box"):
        PublicKeys.from_dict({"sign": HUB.public().sign})
    with pytest.raises(UnknownKey, match="33 bytes"):
        PublicKeys(sign=b64encode(bytes(33)), box=HUB.public().box)


def test_sign_only_for_presence() -> None:
    hdr = Header(v=2, id=new_id(), type="presence", sender="acme", ts=NOW)
    body = canonical_json({"status": "online", "humans_available": True})
    sig = sign_only(body, hdr, BRAND)
    verify_signed(sig, hdr, body, BRAND.public().sign)
    # the receiver rebuilds the bytes from the object it parsed, whatever the sender's spacing
    received = json.loads('{ "status" : "online", "humans_available" : true }')
    verify_signed(sig, hdr, canonical_json(received), BRAND.public().sign)
    with pytest.raises(BadSignature):
        verify_signed(
            sig, hdr, canonical_json({"status": "offline", "humans_available": True}), BRAND.public().sign
        )
    with pytest.raises(BadSignature):
        verify_signed(sig, dataclasses.replace(hdr, recipient="home-7f3a"), body, BRAND.public().sign)


def test_sealed_and_signed_signatures_cannot_be_swapped() -> None:
    hdr, sealed, sig = sealed_message()
    with pytest.raises(BadSignature):
        verify_signed(sig, hdr, b64decode(sealed), HUB.public().sign)
    signed_sig = sign_only(b64decode(sealed), hdr, HUB)
    with pytest.raises(BadSignature):
        open_sealed(sealed, signed_sig, hdr, HUB.public().sign, BRAND)


def test_an_unencodable_header_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="ts -1"):
        seal(BODY, header(ts=-1), HUB, BRAND.public().box)
    with pytest.raises(ValueError, match="not valid Unicode"):
        sign_only(BODY, header(sender="\ud800"), HUB)


def test_known_answer_vector() -> None:
    """For implementations in other languages: fixed keys, header and body give these bytes."""
    ident = Identity.from_secrets(bytes(range(32)), bytes(range(32, 64)))
    assert ident.public() == PublicKeys(
        sign="A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg", box="NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ"
    )
    assert ident.public().fingerprint() == "1657-9922-BFFC-2C60-B753"
    hdr = Header(
        v=2, id="01a207e5-f24a-7f92-8ce1-8a2990d028e7", type="presence", sender="acme", ts=1795428840010
    )
    body = canonical_json({"status": "online", "humans_available": True})
    assert body == b'{"humans_available":true,"status":"online"}'

    def lp(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    expected = (
        lp(b"foyer-envelope-sig-v1")
        + lp(b"signed")
        + struct.pack(">Q", 2)
        + lp(hdr.id.encode())
        + lp(b"presence")
        + lp(b"acme")
        + b"\x00"
        + b"\x00"
        + b"\x00"  # no recipient, conversation or ref
        + struct.pack(">Q", 1795428840010)
        + lp(body)
    )
    assert signature_input(hdr, "signed", body) == expected
    assert sign_only(body, hdr, ident) == (
        "69VekHT2NSIku7mpyZpYZE-0fmoUWhyukNNanLUxmaV6EsJP6udP3el5HWJYiaaFeWxO4hwNXs-6Q_sJpwU8Bw"
    )
    with_fields = signature_input(dataclasses.replace(hdr, recipient="", ref="r"), "signed", b"")
    assert b"\x01\x00\x00\x00\x00" + b"\x00" + b"\x01\x00\x00\x00\x01r" in with_fields


def test_base64url_is_strict() -> None:
    assert b64encode(b"\xfb\xff") == "-_8"
    assert b64decode("-_8") == b"\xfb\xff"
    for bad in ("-_8=", "+/8", "-_9", "A", "AB CD", "ABC\n", "é"):
        with pytest.raises(ValueError, match="base64url"):
            b64decode(bad)


def test_canonical_json() -> None:
    assert canonical_json({"b": [1, {"d": None, "c": "é\n"}], "a": True}) == (
        '{"a":true,"b":[1,{"c":"é\\n","d":null}]}'.encode()
    )
    with pytest.raises(TypeError, match="integers only"):
        canonical_json({"x": [1.5]})


def test_errors_are_protocol_errors_with_wire_codes() -> None:
    codes = {
        cls: cls.code for cls in (BadSignature, CannotOpen, ReplayedEnvelope, ExpiredEnvelope, UnknownKey)
    }
    assert codes == {
        BadSignature: "bad_signature",
        CannotOpen: "cannot_open",
        ReplayedEnvelope: "replayed",
        ExpiredEnvelope: "expired",
        UnknownKey: "unknown_key",
    }
    assert all(issubclass(cls, SecurityError) and issubclass(cls, ProtocolError) for cls in codes)


# --- public keys, key files, rotation ---------------------------------------------------------


def test_fingerprint_and_public_keys() -> None:
    keys = HUB.public()
    assert PublicKeys.from_dict(keys.as_dict()) == keys
    assert len(keys.sign) == len(keys.box) == 43
    fingerprint = keys.fingerprint()
    assert len(fingerprint) == 24
    assert fingerprint.count("-") == 4
    assert all(c in "0123456789ABCDEF-" for c in fingerprint)
    assert keys.fingerprint(groups=3) == fingerprint[:14]
    assert fingerprint != BRAND.public().fingerprint()
    assert repr(HUB) == f"Identity({fingerprint})"


def test_key_file_is_created_0600_in_a_0700_directory_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "hub.json"
    created = Identity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert Identity.load_or_create(path).public() == created.public()
    assert os.listdir(path.parent) == ["hub.json"], "no temporary file is left behind"
    content = json.loads(path.read_text())
    assert content["format"] == "foyer-identity-v1"
    assert content["previous"] is None
    assert content["current"]["public"] == created.public().as_dict()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "hub.json"
    Identity.load_or_create(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=rf"{re.escape(str(path))}.*mode 0{mode:o}.*expected 0600"):
        Identity.load_or_create(path)
    path.chmod(0o400)
    Identity.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "not JSON"),
        ("[]", "format"),
        ('{"format": "other"}', "format 'other'"),
        ('{"format": "foyer-identity-v1", "current": {"sign_seed": "AA"}}', "current is corrupt"),
    ],
)
def test_a_corrupt_key_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "hub.json"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(KeyFileError, match=message):
        Identity.load(path)


def test_a_key_file_whose_public_keys_disagree_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.json"
    Identity.load_or_create(path)
    content = json.loads(path.read_text())
    content["current"]["public"]["box"] = OTHER.public().box
    path.write_text(json.dumps(content))
    with pytest.raises(KeyFileError, match="does not match"):
        Identity.load(path)


def test_concurrent_creation_gives_one_identity(tmp_path: Path) -> None:
    path = tmp_path / "hub.json"
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda _: Identity.load_or_create(path).public(), range(16)))
    assert len(set(created)) == 1
    assert os.listdir(tmp_path) == ["hub.json"]


def test_rotation_keeps_old_sealed_messages_openable(tmp_path: Path) -> None:
    path = tmp_path / "brand.json"
    old = Identity.load_or_create(path)
    hdr = header()
    sealed, sig = seal(BODY, hdr, HUB, old.public().box)  # in the hub's outbox during the switch

    new = Identity.rotate(path)
    assert new.public() != old.public()
    assert new.previous_public() == old.public()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = Identity.load(path)
    assert reloaded.public() == new.public()
    assert reloaded.previous_public() == old.public()
    assert open_sealed(sealed, sig, hdr, HUB.public().sign, reloaded) == BODY
    new_sealed, new_sig = seal(BODY, hdr, HUB, new.public().box)
    assert open_sealed(new_sealed, new_sig, hdr, HUB.public().sign, reloaded) == BODY
    with pytest.raises(CannotOpen):
        open_sealed(new_sealed, new_sig, hdr, HUB.public().sign, old)

    newest = Identity.rotate(path)  # one generation is kept: the first keys are forgotten
    with pytest.raises(CannotOpen):
        open_sealed(sealed, sig, hdr, HUB.public().sign, newest)
    assert os.listdir(tmp_path) == ["brand.json"]


def test_rotation_proof(tmp_path: Path) -> None:
    path = tmp_path / "brand.json"
    old = Identity.load_or_create(path).public()
    new = Identity.rotate(path)
    proof = new.rotation_proof()
    assert verify_rotation(old, new.public(), proof)
    assert proof == Identity.load(path).rotation_proof(), "deterministic, recomputable"

    forged_by_other = b64encode(OTHER._sign(b"anything"))
    assert not verify_rotation(old, new.public(), forged_by_other)
    assert not verify_rotation(old, OTHER.public(), proof), "the proof names the new keys"
    assert not verify_rotation(OTHER.public(), new.public(), proof)
    assert not verify_rotation(new.public(), old, proof), "not reversible"
    assert not verify_rotation(old, new.public(), flip_bit(proof, 10))
    assert not verify_rotation(old, new.public(), "garbage")
    # an envelope signature by the old key is not a rotation proof
    assert not verify_rotation(old, new.public(), sign_only(BODY, header(), Identity.load(path)))
    with pytest.raises(ValueError, match="no previous keys"):
        OTHER.rotation_proof()


# --- replay guard -----------------------------------------------------------------------------


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_replay_window() -> None:
    guard = ReplayGuard(sqlite3.connect(":memory:"), clock=Clock(NOW))
    guard.check(header(ts=NOW))
    guard.check(header(ts=NOW - DEFAULT_WINDOW_MS))
    guard.check(header(ts=NOW + DEFAULT_FUTURE_SKEW_MS))
    with pytest.raises(ExpiredEnvelope, match="has expired") as past:
        guard.check(header(ts=NOW - DEFAULT_WINDOW_MS - 1))
    assert not past.value.future
    assert past.value.code == "expired"
    assert header().id in str(past.value)
    with pytest.raises(ExpiredEnvelope, match="from the future") as future:
        guard.check(header(ts=NOW + DEFAULT_FUTURE_SKEW_MS + 1))
    assert future.value.future
    with pytest.raises(ExpiredEnvelope, match="not an integer"):
        guard.check(header(ts="1"))


def test_an_expired_envelope_is_refused_even_if_never_seen() -> None:
    guard = ReplayGuard(sqlite3.connect(":memory:"), window_ms=1000, clock=Clock(NOW))
    hdr = header(id=new_id(), ts=NOW - 1001)
    assert not guard.seen(hdr.id)
    with pytest.raises(ExpiredEnvelope):
        guard.check(hdr)


@pytest.mark.parametrize("isolation_level", [None, ""])
def test_seen_ids_survive_a_reopened_database(tmp_path: Path, isolation_level: str | None) -> None:
    path = tmp_path / "hub.db"
    conn = sqlite3.connect(path, isolation_level=isolation_level)
    guard = ReplayGuard(conn, clock=Clock(NOW))
    guard.remember("01a207e6-0000-7000-8000-000000000001", NOW)
    conn.close()  # no commit from the caller: remember committed what it began

    guard = ReplayGuard(sqlite3.connect(path), clock=Clock(NOW))
    assert guard.seen("01a207e6-0000-7000-8000-000000000001")
    assert not guard.seen("01a207e6-0000-7000-8000-000000000002")
    guard.check(header(id="01a207e6-0000-7000-8000-000000000001"))  # a duplicate is not expired
    with pytest.raises(ReplayedEnvelope, match="already accepted"):
        guard.check(header(id="01a207e6-0000-7000-8000-000000000001"), allow_seen=False)


def test_remember_joins_the_callers_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    guard = ReplayGuard(conn, clock=Clock(NOW))
    conn.execute("BEGIN")
    guard.remember("rolled-back-id", NOW)
    assert conn.in_transaction
    conn.execute("ROLLBACK")
    assert not guard.seen("rolled-back-id")


def test_prune_forgets_only_ids_outside_the_window() -> None:
    clock = Clock(NOW)
    guard = ReplayGuard(sqlite3.connect(":memory:"), window_ms=1000, clock=clock)
    guard.remember("old-envelope", NOW - 1001)
    guard.remember("edge-envelope", NOW - 1000)
    guard.remember("new-envelope", NOW)
    guard.remember("future-envelope", NOW + 60_000)
    assert guard.prune() == 1
    assert not guard.seen("old-envelope")
    assert all(guard.seen(i) for i in ("edge-envelope", "new-envelope", "future-envelope"))
    clock.now = NOW + 1001
    assert guard.prune() == 2
    assert not guard.seen("edge-envelope")
    assert not guard.seen("new-envelope")
    assert guard.seen("future-envelope")


def test_remember_keeps_the_latest_ts() -> None:
    clock = Clock(NOW)
    guard = ReplayGuard(sqlite3.connect(":memory:"), window_ms=1000, clock=clock)
    guard.remember("restamped", NOW - 900)
    guard.remember("restamped", NOW)
    guard.remember("restamped", NOW - 950)
    clock.now = NOW + 950
    guard.prune()
    assert guard.seen("restamped")


# --- properties -------------------------------------------------------------------------------

FIELDS = ["v", "id", "type", "sender", "recipient", "conversation", "ref", "ts"]
anything = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.binary(max_size=8),
    st.booleans(),
)
texts = st.one_of(st.text(max_size=80), st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True))
ints = st.one_of(st.integers(min_value=0, max_value=2**63 - 1), st.integers())
any_header = st.builds(
    Header,
    v=st.one_of(ints, anything),
    id=st.one_of(texts, anything),
    type=st.one_of(st.sampled_from(["message", "reply", "presence"]), anything),
    sender=st.one_of(texts, anything),
    ts=st.one_of(ints, anything),
    recipient=st.one_of(texts, anything),
    conversation=st.one_of(texts, anything),
    ref=st.one_of(texts, anything),
)
junk_b64 = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(b64encode),
    st.binary(min_size=64, max_size=64).map(b64encode),
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
)
fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(sealed=junk_b64, sig=junk_b64, hdr=any_header)
def test_junk_is_never_opened(sealed: str, sig: str, hdr: Header) -> None:
    with pytest.raises(BadSignature):
        open_sealed(sealed, sig, hdr, HUB.public().sign, BRAND)


@fast
@given(sealed=junk_b64, sig=junk_b64, hdr=any_header, key=st.one_of(junk_b64, anything))
def test_junk_with_any_sender_key_raises_only_our_errors(
    sealed: str, sig: str, hdr: Header, key: Any
) -> None:
    with pytest.raises(SecurityError):
        open_sealed(sealed, sig, hdr, key, BRAND)
    with pytest.raises(SecurityError):
        verify_signed(sig, hdr, sealed.encode("utf-8", "surrogatepass"), key)


@fast
@given(hdr=any_header)
def test_a_valid_seal_under_another_header_is_refused(hdr: Header) -> None:
    original, sealed, sig = sealed_message()
    if hdr == original:  # pragma: no cover - astronomically unlikely
        return
    with pytest.raises(BadSignature):
        open_sealed(sealed, sig, hdr, HUB.public().sign, BRAND)


@fast
@given(
    data=st.data(), target=st.sampled_from(["sealed bytes", "sig bytes", "sealed text", "sig text", "header"])
)
def test_every_mutation_of_a_valid_envelope_is_refused(data: st.DataObject, target: str) -> None:
    hdr, sealed, sig = sealed_message(header(id=new_id(), ref=new_id()))
    assert open_sealed(sealed, sig, hdr, HUB.public().sign, BRAND) == BODY
    if target in ("sealed bytes", "sig bytes"):
        text = sealed if target == "sealed bytes" else sig
        size = len(b64decode(text))
        changed = flip_bit(text, data.draw(st.integers(0, size - 1)), data.draw(st.integers(0, 7)))
        sealed, sig = (changed, sig) if target == "sealed bytes" else (sealed, changed)
    elif target in ("sealed text", "sig text"):
        text = sealed if target == "sealed text" else sig
        index = data.draw(st.integers(0, len(text) - 1))
        char = data.draw(st.characters().filter(lambda c, old=text[index]: c != old))
        changed = text[:index] + char + text[index + 1 :]
        sealed, sig = (changed, sig) if target == "sealed text" else (sealed, changed)
    else:
        field = data.draw(st.sampled_from(FIELDS))
        value = data.draw(st.one_of(texts, ints, anything).filter(lambda v: v != getattr(hdr, field)))
        hdr = dataclasses.replace(hdr, **{field: value})
    with pytest.raises(BadSignature):
        open_sealed(sealed, sig, hdr, HUB.public().sign, BRAND)


@fast
@given(data=st.data())
def test_every_mutation_of_a_signed_body_is_refused(data: st.DataObject) -> None:
    hdr = Header(v=2, id=new_id(), type="presence", sender="acme", ts=NOW)
    body = canonical_json({"status": "online", "humans_available": data.draw(st.booleans())})
    sig = sign_only(body, hdr, BRAND)
    changed = data.draw(st.binary(max_size=64).filter(lambda b: b != body))
    with pytest.raises(BadSignature):
        verify_signed(sig, hdr, changed, BRAND.public().sign)


def test_creation_without_hard_links_falls_back_to_an_exclusive_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "hub.json"
    created = Identity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Identity.load(path).public() == created.public()
    assert os.listdir(tmp_path) == ["hub.json"]
