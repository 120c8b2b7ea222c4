"""A brand adapter written without the SDK, from docs/protocol.md alone.

Raw paho and plain JSON; the sealing and signing use only libsodium primitives (through
``hub.crypto``'s thin helpers, as another language would call libsodium directly).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from hub.crypto import Header, Identity, canonical_json, open_sealed, seal, sign_only
from tests.conftest import HubRunner
from tests.factories import RawMqtt, wait_for

pytestmark = pytest.mark.e2e

MANIFEST = {
    "id": "acme",
    "name": "Acmé Réparations",
    "aliases": ["acme", "acmé"],
    "description": {"fr": "Réparation d'électroménager.", "en": "Appliance repairs."},
    "scopes": [],
    "categories": ["transactional"],
    "humans": {"available": False},
    "contact": [{"kind": "phone", "value": "+33 1 23 45 67 89"}],
}


ACME = Identity.generate()
MANIFEST["keys"] = ACME.public().as_dict()


def envelope(kind: str, body: dict[str, object], hub_box: str | None = None, **fields: object) -> bytes:
    """Sign (and, for all but receipts and presence, seal) an envelope as docs/protocol.md says."""
    raw: dict[str, object] = {"v": 1, "id": str(uuid.uuid4()), "type": kind, "sender": "acme",
                              "ts": int(time.time() * 1000), **fields}
    header = Header.from_mapping(raw)
    if hub_box is None:
        raw["body"] = body
        raw["sig"] = sign_only(canonical_json(body), header, ACME)
    else:
        raw["sealed"], raw["sig"] = seal(canonical_json(body), header, ACME, hub_box)
    return json.dumps(raw).encode()


def test_a_brand_in_another_language_joins_and_answers(hub_runner: HubRunner) -> None:
    client = hub_runner.start()
    acme = RawMqtt(hub_runner.broker.port, "acme-adapter")
    try:
        acme.publish("foyer/v1/brand/acme/manifest", json.dumps(MANIFEST).encode(), retain=True)
        acme.publish("foyer/v1/brand/acme/status", envelope("presence", {"status": "online"}), retain=True)
        acme.subscribe("foyer/v1/brand/acme/from/+")
        wait_for(lambda: client.brand("acme").get("name") == "Acmé Réparations", 15, "acme in the directory")
        opted = client.http.post("/api/brands/acme/opt-in").json()
        assert opted["opted_in"] is True
        assert opted["keys"] == ACME.public().fingerprint()  # pinned at opt-in, shown to the household
        wait_for(lambda: client.brand("acme")["online"], 15, "acme online")
        sent = client.send("Acmé, mon lave-linge fuit").json()
        assert sent["brand"] == "acme"
        message = wait_for(lambda: next((e for e in acme.envelopes() if e["type"] == "message"), None),
                           15, "the message at the brand")
        assert "body" not in message  # the broker only ever saw ciphertext
        assert "lave-linge" not in json.dumps(message)
        hub_keys = message["keys"]  # pinned at first contact
        header = Header.from_mapping({k: v for k, v in message.items() if k not in ("sealed", "sig")})
        body = json.loads(open_sealed(message["sealed"], message["sig"], header, hub_keys["sign"], ACME))
        assert body == {"text": "Acmé, mon lave-linge fuit", "lang": "fr", "data": {}}
        hub_topic = f"foyer/v1/hub/{message['sender']}/from/acme"
        acme.publish(hub_topic, envelope("receipt", {"status": "received"}, ref=message["id"],
                                         recipient=message["sender"]))
        reply = envelope("reply", {"text": "Un technicien passe demain.", "lang": "fr",
                                   "author": {"kind": "human", "name": "Paul"}}, hub_keys["box"],
                         conversation=message["conversation"], ref=message["id"],
                         recipient=message["sender"])
        acme.publish(hub_topic, reply)
        acme.publish(hub_topic, reply)  # at-least-once: the hub must store it once
        [answer] = client.wait_reply(sent["conversation"])
        assert (answer["text"], answer["author_kind"], answer["author_name"]) == (
            "Un technicien passe demain.", "human", "Paul")
        wait_for(lambda: len([e for e in acme.envelopes() if e["type"] == "receipt"]) >= 2, 10,
                 "the hub's receipts for both copies")
        assert client.conversation(sent["conversation"])["messages"][0]["status"] == "delivered"
        assert len(client.replies(sent["conversation"])) == 1
    finally:
        acme.publish("foyer/v1/brand/acme/manifest", b"", retain=True)
        acme.publish("foyer/v1/brand/acme/status", b"", retain=True)
        acme.close()
