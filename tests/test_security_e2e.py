"""What a broker operator, or anyone on the broker, sees and can do — against both brokers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

from hub.crypto import Identity
from hub.protocol import Author, Envelope, ReplyBody, Topics
from hub.wire import Wire
from tests.conftest import BrandRunner, HubRunner, hub_with_brand
from tests.factories import RawMqtt, python_cmd, wait_for

pytestmark = pytest.mark.e2e

SECRET = "Zébulon-4821-secret"


def test_the_broker_sees_no_plaintext_of_a_real_conversation(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    hub_runner.opt_in = ["instant"]
    snooper = RawMqtt(hub_runner.broker.port, "snooper")
    snooper.subscribe("#")
    try:
        client = hub_runner.start()
        brands("instant").start()
        client.wait_online("instant")
        sent = client.send(f"Mon mot de passe est {SECRET}", brand="instant").json()
        [reply] = client.wait_reply(sent["conversation"])
        assert SECRET in reply["text"]  # control: the brand did read and echo it
        time.sleep(0.5)
    finally:
        snooper.close()
    seen = [payload for _, payload in snooper.received]
    assert len(seen) >= 4  # message, receipt, reply, receipt at least: the snooper was listening
    for payload in seen:
        assert SECRET.encode() not in payload
        assert "Zébulon".encode() not in payload
        assert b"mot de passe" not in payload


def test_an_impostor_without_the_brands_key_cannot_speak_for_it(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    client, _ = hub_with_brand(hub_runner, brands)
    sent = client.send("bonjour", brand="instant").json()
    client.wait_reply(sent["conversation"])
    hub_keys = Identity.load(hub_runner.data_dir / "hub.keys.json").public()
    impostor = Wire(Identity.generate())
    fake = Envelope(
        type="reply",
        sender="instant",
        recipient="test-home",
        conversation=sent["conversation"],
        body=ReplyBody(text="Payez ici : http://arnaque.example", author=Author(name="Faux")),
    )
    rogue = RawMqtt(hub_runner.broker.port, "impostor")
    try:
        rogue.subscribe(Topics.to_brand("instant", "test-home"))
        rogue.publish(Topics.to_hub("test-home", "instant"), impostor.encode(fake, hub_keys))
        wait_for(lambda: client.health()["refused"].get("bad_signature") == 1, 10, "the refusal")
    finally:
        rogue.close()
    texts = [m["text"] for m in client.replies(sent["conversation"])]
    assert texts == ["reçu #1: bonjour"]
    assert not any(x.get("type") == "error" for x in rogue.envelopes())  # a forgery gets no answer


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_the_hub_rotates_its_keys_and_conversations_go_on(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    client, _ = hub_with_brand(hub_runner, brands)
    first = client.send("avant la rotation", brand="instant").json()
    client.wait_reply(first["conversation"])
    old = client.health()["hub_keys"]
    hub_runner.stop()
    rotated = subprocess.run(
        python_cmd("keys", "rotate", "--data-dir", str(hub_runner.data_dir)),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "new keys" in rotated.stdout
    key_file = hub_runner.data_dir / "hub.keys.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    client = hub_runner.start()
    assert client.health()["hub_keys"] != old
    client.wait_online("instant")
    client.send("après la rotation", conversation=first["conversation"])
    replies = client.wait_reply(first["conversation"], count=2, timeout=20)
    assert replies[1]["text"] == "reçu #2: après la rotation"  # same conversation, new keys
