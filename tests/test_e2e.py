"""End to end: HTTP/WebSocket client → hub process → real broker → brand adapter process → back.

Every test runs against the embedded broker and against Mosquitto (see ``conftest.broker``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import BrandRunner, Broker, HubRunner, hub_with_brand
from tests.factories import next_event, wait_for

pytestmark = pytest.mark.e2e


def test_message_reaches_brand_and_reply_comes_back_live(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    client, _ = hub_with_brand(hub_runner, brands)
    with client.events() as ws:
        response = client.send("Bonjour, est-ce que ça marche ?", brand="instant")
        assert response.status_code == 202, response.text
        sent = response.json()
        assert sent["status"] == "accepted"
        assert sent["notice"] is None
        reply = next_event(ws, lambda e: e["event"] == "message" and e["data"]["direction"] == "in")
    assert reply["data"]["text"] == "reçu #1: Bonjour, est-ce que ça marche ?"
    assert reply["data"]["author_kind"] == "bot"
    assert reply["data"]["ref"] == sent["message"]["id"]
    messages = client.wait_reply(sent["conversation"])
    assert len(messages) == 1
    view = client.conversation(sent["conversation"])["messages"]
    assert [m["direction"] for m in view] == ["out", "in"]
    wait_for(lambda: client.conversation(sent["conversation"])["messages"][0]["status"] == "delivered",
             10, "the brand's receipt")
    # The conversation continues with the same brand without naming it.
    again = client.send("Et une deuxième fois ?", conversation=sent["conversation"]).json()
    assert again["brand"] == "instant"
    replies = client.wait_reply(sent["conversation"], count=2)
    assert replies[1]["text"] == "reçu #2: Et une deuxième fois ?"
    # A client that reconnects with ?since= gets everything it missed, in order.
    with client.events(since=reply["data"]["seq"]) as ws:
        missed = next_event(ws, lambda e: e["event"] == "message" and e["data"]["direction"] == "in")
    assert missed["data"]["text"] == "reçu #2: Et une deuxième fois ?"


def test_brand_offline_message_is_queued_then_answered(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    hub_runner.opt_in = ["instant"]
    client = hub_runner.start()
    response = client.send("Are you there?", brand="instant")
    assert response.status_code == 202
    sent = response.json()
    assert sent["status"] == "queued"
    assert "offline" in sent["notice"]
    assert client.replies(sent["conversation"]) == []
    brands("instant").start()
    replies = client.wait_reply(sent["conversation"], timeout=20)
    assert replies[0]["text"] == "received #1: Are you there?"


def test_brand_stopped_mid_conversation_then_back(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    client, brand = hub_with_brand(hub_runner, brands)
    first = client.send("premier message", brand="instant").json()
    client.wait_reply(first["conversation"])
    brand.stop()
    wait_for(lambda: not client.brand("instant")["online"], 15, "instant offline")
    second = client.send("deuxième message", conversation=first["conversation"]).json()
    assert second["status"] == "queued"
    assert "hors ligne" in second["notice"]
    brand.start()
    replies = client.wait_reply(first["conversation"], count=2, timeout=20)
    assert replies[1]["text"] == "reçu #2: deuxième message"


def _handled(state: Path) -> set[str]:
    with sqlite3.connect(state) as conn:
        rows = conn.execute("SELECT id FROM seen WHERE status = 'handled'").fetchall()
    return {row[0] for row in rows}


def test_hub_killed_while_messages_flow_loses_nothing_and_duplicates_nothing(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner], broker: Broker
) -> None:
    client, brand = hub_with_brand(hub_runner, brands)
    conversation = client.send("début", brand="instant").json()["conversation"]
    accepted: list[str] = []
    stop = threading.Event()
    current = {"client": client}

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                response = current["client"].send(f"message {n}", conversation=conversation)
            except (httpx.HTTPError, RuntimeError):  # hub down, or its old client closed
                time.sleep(0.05)
                continue  # not accepted, so not owed
            if response.status_code == 202:
                accepted.append(response.json()["message"]["id"])

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_for(lambda: len(accepted) >= 20, 20, "20 accepted messages")
    hub_runner.kill()  # SIGKILL while the writer is still sending
    killed_at = len(accepted)
    current["client"] = hub_runner.start()
    wait_for(lambda: len(accepted) >= killed_at + 10, 20, "10 more accepted after restart")
    stop.set()
    thread.join(10)
    client = current["client"]
    total = len(accepted) + 1  # plus "début"
    view = wait_for(
        lambda: (m := client.conversation(conversation)["messages"])
        and sum(x["direction"] == "in" for x in m) >= sum(x["direction"] == "out" for x in m) >= total
        and m,
        40,
        f"{total} replies",
    )
    out = [m for m in view if m["direction"] == "out"]
    out_ids = [m["id"] for m in out]
    in_refs = [m["ref"] for m in view if m["direction"] == "in"]
    assert set(accepted) <= set(out_ids), "an accepted message is missing from the conversation"
    assert len(out_ids) == len(set(out_ids)), "a message is shown twice"
    assert len({m["text"] for m in out}) == len(out), "a message was stored twice under two ids"
    # At most one more than the 202s: a POST committed just as the hub died, its answer lost.
    assert total <= len(out_ids) <= total + 1
    assert sorted(in_refs) == sorted(out_ids), "each message has exactly one reply"
    handled = _handled(brand.state)
    assert set(handled) == set(out_ids), "the brand handled a message never stored, or missed one"
    # The instant brand counts its handler runs per conversation ("reçu #N"): a double run
    # would show as a repeated or extra N.
    turns = sorted(int(m["text"].split("#")[1].split(":")[0]) for m in view if m["direction"] == "in")
    assert turns == list(range(1, len(out_ids) + 1)), "the brand's handler ran twice on a message"


def test_routing_from_text_and_asking_when_unclear(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    hub_runner.opt_in = ["sportissimo", "energie_claire"]
    client = hub_runner.start()
    brands("sportissimo").start()
    client.wait_online("sportissimo")
    unclear = client.send("Bonjour, j'ai une question")
    assert unclear.status_code == 409
    body = unclear.json()
    assert body["error"] == "ambiguous_brand"
    assert set(body["candidates"]) == {"sportissimo", "energie_claire"}
    assert "Sportissimo" in body["message"]
    routed = client.send("Où en est ma commande Sportisimo 4821 ?")  # typo on purpose
    assert routed.status_code == 202, routed.text
    assert routed.json()["brand"] == "sportissimo"
    reply = client.wait_reply(routed.json()["conversation"])[0]
    assert "4821" in reply["text"]


def test_broker_restart_loses_nothing(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner], broker: Broker
) -> None:
    client, brand = hub_with_brand(hub_runner, brands)
    first = client.send("avant la panne", brand="instant").json()
    client.wait_reply(first["conversation"])
    brand.stop()  # the brand is away while the broker restarts: messages wait in the hub's outbox
    wait_for(lambda: not client.brand("instant")["online"], 15, "instant offline")
    broker.restart()  # Mosquitto here keeps nothing on disk; the embedded broker never does
    during = [client.send(f"pendant la panne {n}", conversation=first["conversation"]).json()
              for n in range(5)]
    assert all(d["status"] == "queued" for d in during)
    wait_for(lambda: client.health()["broker_connected"], 30, "the hub reconnected")
    brand.start()
    replies = client.wait_reply(first["conversation"], count=6, timeout=40)
    assert [r["text"] for r in replies[1:]] == [f"reçu #{n + 2}: pendant la panne {n}" for n in range(5)]
