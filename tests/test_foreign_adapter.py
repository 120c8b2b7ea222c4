"""A brand adapter written without the SDK, from docs/protocol.md alone (raw paho, plain JSON)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

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


def envelope(kind: str, body: dict[str, object], **fields: object) -> bytes:
    return json.dumps({"v": 1, "id": str(uuid.uuid4()), "type": kind, "sender": "acme",
                       "ts": int(time.time() * 1000), "body": body, **fields}).encode()


def test_a_brand_in_another_language_joins_and_answers(hub_runner: HubRunner) -> None:
    client = hub_runner.start()
    acme = RawMqtt(hub_runner.broker.port, "acme-adapter")
    try:
        acme.publish("foyer/v1/brand/acme/manifest", json.dumps(MANIFEST).encode(), retain=True)
        acme.publish("foyer/v1/brand/acme/status", envelope("presence", {"status": "online"}), retain=True)
        acme.subscribe("foyer/v1/brand/acme/from/+")
        wait_for(lambda: client.brand("acme").get("name") == "Acmé Réparations", 15, "acme in the directory")
        assert client.http.post("/api/brands/acme/opt-in").json()["opted_in"] is True
        wait_for(lambda: client.brand("acme")["online"], 15, "acme online")
        sent = client.send("Acmé, mon lave-linge fuit").json()
        assert sent["brand"] == "acme"
        message = wait_for(lambda: next((e for e in acme.envelopes() if e["type"] == "message"), None),
                           15, "the message at the brand")
        assert message["body"] == {"text": "Acmé, mon lave-linge fuit", "lang": "fr", "data": {}}
        hub_topic = f"foyer/v1/hub/{message['sender']}/from/acme"
        acme.publish(hub_topic, envelope("receipt", {"status": "received"}, ref=message["id"],
                                         recipient=message["sender"]))
        reply = envelope("reply", {"text": "Un technicien passe demain.", "lang": "fr",
                                   "author": {"kind": "human", "name": "Paul"}},
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
