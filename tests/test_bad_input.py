"""Bad input, over HTTP and over MQTT, against a real hub process: refused, explained, counted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from hub.crypto import Identity
from hub.protocol import MAX_PAYLOAD_BYTES, Author, Envelope, NotificationBody, ReplyBody, Topics, new_id
from hub.wire import Wire
from tests.conftest import BrandRunner, HubRunner, hub_with_brand
from tests.factories import RawMqtt, wait_for

pytestmark = pytest.mark.e2e


def test_http_errors_say_what_was_wrong(hub_runner: HubRunner) -> None:
    hub_runner.opt_in = ["instant"]
    client = hub_runner.start()
    http = client.http
    cases = [
        (http.post("/api/messages", json={"text": "x", "brand": "nope"}), 404, "unknown_brand", "'nope'"),
        (http.post("/api/messages", json={"text": "x", "brand": "sportissimo"}), 403, "not_opted_in",
         "'sportissimo'"),
        (http.post("/api/messages", json={"text": "x" * 4001, "brand": "instant"}), 422,
         "invalid_request", "text: String should have at most 4000 characters"),
        (http.post("/api/messages", json={"text": "", "brand": "instant"}), 422, "invalid_request",
         "text"),
        (http.post("/api/messages", content=b"{nope", headers={"content-type": "application/json"}),
         422, "invalid_request", "JSON"),
        (http.post("/api/messages", content=b"x" * (MAX_PAYLOAD_BYTES + 1),
                   headers={"content-type": "application/json"}), 413, "too_large", "65537 bytes"),
        (http.post("/api/messages", json={"text": "x", "conversation": new_id()}), 404,
         "unknown_conversation", "does not exist"),
        (http.post("/api/messages", json={"text": "bonjour"}), 409, "ambiguous_brand",
         "À quelle marque"),
        (http.post("/api/brands/ghost/opt-in"), 404, "unknown_brand", "'ghost'"),
    ]
    for response, status, code, words in cases:
        body = response.json()
        assert response.status_code == status, body
        assert body["error"] == code, body
        assert words in body["message"], body
    refused = client.health()["refused"]
    assert refused["http_invalid_request"] == 3
    assert refused["http_unknown_brand"] == 2


def test_bad_envelopes_from_a_brand_are_refused_answered_and_counted(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    client, brand = hub_with_brand(hub_runner, brands)
    kept = client.send("un message accepté", brand="instant").json()
    client.wait_reply(kept["conversation"])
    # This "brand" holds instant's real keys: a buggy adapter, not a forger.
    wire = Wire(Identity.load(brand.state.with_suffix(".keys.json")))
    hub_keys = Identity.load(hub_runner.data_dir / "hub.keys.json").public()

    rogue = RawMqtt(hub_runner.broker.port, "test-rogue-instant")
    try:
        rogue.subscribe(Topics.to_brand("instant", "test-home"))
        topic = Topics.to_hub("test-home", "instant")
        stray = Envelope(type="reply", sender="instant", conversation=new_id(),
                         body=ReplyBody(text="hello", author=Author(name="x")))
        payloads = {
            "malformed_json": b"{this is not json",
            "unsupported_version": json.dumps({"v": 7, "type": "reply"}).encode(),
            "unknown_type": json.dumps({"v": 1, "type": "teleport", "id": "abcdefgh12"}).encode(),
            "too_large": b'{"v": 1, "pad": "' + b"x" * (MAX_PAYLOAD_BYTES + 100) + b'"}',
            "unknown_conversation": wire.encode(stray, hub_keys),
        }
        forged = Wire(Identity.generate()).encode(stray, hub_keys)  # signed by someone else
        for payload in [*payloads.values(), forged]:
            rogue.publish(topic, payload)

        def errors() -> list[Envelope]:
            return [wire.decode(json.dumps(x).encode(), lambda _s, _k: hub_keys)
                    for x in rogue.envelopes() if x.get("type") == "error"]

        answered = wait_for(lambda: (e := errors()) and len(e) >= len(payloads) and e, 15,
                            "an error envelope for each bad payload")
        time.sleep(0.5)
        answered = errors()
        codes = sorted(e.body.code for e in answered)  # type: ignore[union-attr]
        assert codes == sorted(payloads), "one error each, and none for the forgery"
        refs = {e.body.code: e.ref for e in answered}  # type: ignore[union-attr]
        assert refs["unknown_conversation"] == stray.id  # verified: its id can be echoed
        assert refs["unknown_type"] is None  # unverified: its id is never echoed
    finally:
        rogue.close()
    refused = client.health()["refused"]
    for code in payloads:
        assert refused[code] == 1, refused
    assert refused["bad_signature"] == 1
    # The hub kept running and kept what it had accepted.
    assert len(client.conversation(kept["conversation"])["messages"]) == 2
    again = client.send("toujours là ?", conversation=kept["conversation"]).json()
    assert client.wait_reply(again["conversation"], count=2)[1]["text"] == "reçu #2: toujours là ?"


def test_opted_out_brand_cannot_reach_the_household(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    client, brand = hub_with_brand(hub_runner, brands)
    rogue = RawMqtt(hub_runner.broker.port, "test-rogue-2")
    topic = Topics.to_hub("test-home", "instant")
    wire = Wire(Identity.load(brand.state.with_suffix(".keys.json")))
    hub_keys = Identity.load(hub_runner.data_dir / "hub.keys.json").public()

    def note(text: str) -> bytes:
        envelope = Envelope(type="notification", sender="instant", body=NotificationBody(text=text))
        return wire.encode(envelope, hub_keys)

    try:
        rogue.publish(topic, note("Avant : votre colis est parti."))  # control: this one gets in
        wait_for(lambda: client.http.get("/api/notifications").json(), 10, "the control notification")
        assert client.http.post("/api/brands/instant/opt-out").json()["opted_in"] is False
        refused = client.send("encore ?", brand="instant")
        assert refused.status_code == 403
        rogue.publish(topic, note("Après : promo !"))
        time.sleep(1.0)  # the control above arrived well within this
    finally:
        rogue.close()
    texts = [n["text"] for n in client.http.get("/api/notifications").json()]
    assert texts == ["Avant : votre colis est parti."]
