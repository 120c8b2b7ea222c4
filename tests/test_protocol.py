"""The wire protocol refuses bad input with a precise error, and round-trips good input."""

from __future__ import annotations

import json
import uuid

import pytest

from hub.errors import (
    InvalidEnvelope,
    MalformedPayload,
    PayloadTooLarge,
    UnknownMessageType,
    UnsupportedVersion,
)
from hub.protocol import (
    MAX_PAYLOAD_BYTES,
    Author,
    Envelope,
    MessageBody,
    ReceiptBody,
    ReplyBody,
    Topics,
    check_id,
    decode,
    new_id,
)


def _message(**fields: object) -> dict[str, object]:
    envelope = Envelope(type="message", sender="home-1", recipient="shop", conversation=new_id(),
                        body=MessageBody(text="Où en est ma commande ?"))
    return {**json.loads(envelope.encode()), **fields}


def test_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_id() for _ in range(200)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == 200
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_round_trip_keeps_every_field() -> None:
    envelope = Envelope(type="reply", sender="shop", recipient="home-1", conversation=new_id(),
                        ref=new_id(), body=ReplyBody(text="Expédiée", author=Author(name="Léa")))
    assert decode(envelope.encode()) == envelope


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        (b"{not json", MalformedPayload, "not JSON"),
        (b"[1, 2]", MalformedPayload, "JSON list"),
        (b"\xff\xfe", MalformedPayload, "not JSON"),
        (json.dumps(_message(v=2)).encode(), UnsupportedVersion, "version 2"),
        (json.dumps(_message(type="teleport")).encode(), UnknownMessageType, "'teleport'"),
        (json.dumps(_message(sender="Not An Id!")).encode(), InvalidEnvelope, "sender"),
        (json.dumps(_message(body={"text": ""})).encode(), InvalidEnvelope, "text"),
        (json.dumps(_message(sealed=7)).encode(), InvalidEnvelope, "sealed"),
        (json.dumps({k: v for k, v in _message().items() if k != "id"}).encode(), InvalidEnvelope,
         "missing id"),
        (json.dumps({k: v for k, v in _message().items() if k != "ts"}).encode(), InvalidEnvelope,
         "missing ts"),
        (json.dumps(_message(v=True)).encode(), UnsupportedVersion, "version True"),
        (json.dumps(_message(ts="123")).encode(), InvalidEnvelope, "ts"),
        (json.dumps(_message(body={"status": "received"})).encode(), InvalidEnvelope, "text"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), PayloadTooLarge, "65537 bytes"),
    ],
)
def test_decode_refuses_bad_payloads_with_a_clear_message(
    payload: bytes, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(")):
        decode(payload)


def test_encode_refuses_an_oversized_envelope_before_publishing() -> None:
    envelope = Envelope(type="message", sender="home-1", conversation=new_id(),
                        body=MessageBody(text="x", data={f"k{i}": "é" * 3000 for i in range(30)}))
    with pytest.raises(PayloadTooLarge, match="limit is 65536"):
        envelope.encode()


def test_an_envelope_body_must_match_its_type() -> None:
    with pytest.raises(ValueError, match="needs a MessageBody body"):
        Envelope(type="message", sender="home-1", body=ReceiptBody())


def test_topics_carry_identities_and_parse_back() -> None:
    assert Topics.to_brand("shop", "home-1") == "foyer/v1/brand/shop/from/home-1"
    assert Topics.to_hub("home-1", "shop") == "foyer/v1/hub/home-1/from/shop"
    assert Topics.parse("foyer/v1/hub/home-1/from/shop") == ("to_hub", "home-1", "shop")
    assert Topics.parse("foyer/v1/brand/shop/status") == ("status", "shop", "")
    with pytest.raises(ValueError, match="not a Foyer v1 topic"):
        Topics.parse("foyer/v1/hub/home-1/to/shop")
    with pytest.raises(ValueError, match=r"brand id '\+'"):
        Topics.to_brand("+", "home-1")


def test_check_id_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="brand id 'A/B' is not valid"):
        check_id("brand", "A/B")
