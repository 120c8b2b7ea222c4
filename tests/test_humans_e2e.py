"""Humans in the loop, end to end: a member asks for a person, a scripted agent at the brand's
desk takes the conversation, answers and closes it; the bot stays silent meanwhile; the member
is asked for a rating; the stats show the time to a human. Against both brokers."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import BrandRunner, HubRunner
from tests.factories import free_port, wait_for

pytestmark = pytest.mark.e2e


def notes(client: object, conversation: str) -> list[dict[str, object]]:
    messages = client.conversation(conversation)["messages"]  # type: ignore[attr-defined]
    return [m for m in messages if m["direction"] == "hub"]


def test_a_person_takes_over_answers_and_closes_and_the_member_rates(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    hub_runner.opt_in = ["instant"]
    client = hub_runner.start()
    brand = brands("instant")
    brand.desk_port = free_port()
    brand.start()
    client.wait_online("instant")
    desk = httpx.Client(base_url=f"http://127.0.0.1:{brand.desk_port}", timeout=10)
    wait_for(lambda: desk.get("/desk/api/status").status_code in (200, 401), 20, "the desk")
    token = desk.post("/desk/api/login", json={"login": "lea", "password": "demo"}).json()["token"]
    desk.headers["Authorization"] = f"Bearer {token}"

    first = client.send("Bonjour, ma commande 4821 ?", brand="instant").json()
    conversation = first["conversation"]
    client.wait_reply(conversation)
    asked = client.send("je veux parler à un conseiller svp", conversation=conversation).json()
    assert asked["message"]["type"] == "handoff"
    wait_for(
        lambda: any(n["extra"]["kind"] == "human_queued" for n in notes(client, conversation)),
        20,
        "the queue position",
    )

    queue = wait_for(lambda: desk.get("/desk/api/queue").json(), 10, "the handoff at the desk")
    [waiting] = [c for c in queue if c["conversation"] == conversation]
    context = str(waiting)
    assert "Bonjour, ma commande 4821 ?" in context  # the transcript excerpt came along
    assert desk.post(f"/desk/api/conversations/{conversation}/take").status_code == 200
    wait_for(
        lambda: any(n["extra"]["kind"] == "human_joined" for n in notes(client, conversation)),
        20,
        "Léa joining",
    )
    assert client.conversation(conversation)["conversation"]["state"] == "human"

    bot_replies_before = len(client.replies(conversation))
    client.send("Vous êtes là ?", conversation=conversation)
    wait_for(
        lambda: "Vous êtes là ?" in str(desk.get(f"/desk/api/conversations/{conversation}").json()),
        10,
        "the member's words at the desk",
    )
    time.sleep(1.0)
    assert len(client.replies(conversation)) == bot_replies_before, "the bot spoke while a person held it"

    assert (
        desk.post(
            f"/desk/api/conversations/{conversation}/reply",
            json={"text": "Oui, c'est Léa. Votre colis arrive demain."},
        ).status_code
        == 200
    )
    human = wait_for(
        lambda: [r for r in client.replies(conversation) if r["author_kind"] == "human"], 20, "Léa's answer"
    )
    assert (human[0]["author_name"], human[0]["text"]) == (
        "Léa",
        "Oui, c'est Léa. Votre colis arrive demain.",
    )

    assert (
        desk.post(f"/desk/api/conversations/{conversation}/release", json={"outcome": "closed"}).status_code
        == 200
    )
    prompt = wait_for(
        lambda: [n for n in notes(client, conversation) if n["extra"]["kind"] == "rating_prompt"],
        20,
        "the rating question",
    )
    assert prompt[0]["extra"]["parts"] == ["bot", "human"]
    rated = client.http.post(
        f"/api/conversations/{conversation}/rating",
        json={"rating_bot": 3, "rating_human": 5, "comment": "Léa au top"},
    )
    assert rated.status_code == 200
    [stats] = client.http.get("/api/stats").json()
    assert stats["time_to_human_ms"] is not None
    assert stats["needed_human"] == 1.0
    assert stats["satisfaction"] == 4.0
    time.sleep(0.5)
    assert desk.get("/desk/api/feedback").json() == []  # not shared: the household did not allow it
    desk.close()


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_off_hours_the_member_gets_hours_channels_and_a_callback(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    hub_runner.opt_in = ["offhours"]
    client = hub_runner.start()
    brand = brands("offhours")
    brand.desk_port = free_port()
    brand.start()
    client.wait_online("offhours")
    sent = client.send("Un humain, s'il vous plaît", brand="offhours").json()
    conversation = sent["conversation"]
    note = wait_for(
        lambda: [n for n in notes(client, conversation) if n["extra"]["kind"] == "human_unavailable"],
        20,
        "the honest answer",
    )[0]
    assert "Aucun conseiller de Boutique de nuit n'est disponible" in note["text"]
    assert "dimanche 03:00" in note["text"]  # the hours
    assert "téléphone +33 1 00 00 00 00" in note["text"]  # the other channels
    assert client.http.post(f"/api/conversations/{conversation}/callback", json={}).status_code == 202
    desk = httpx.Client(base_url=f"http://127.0.0.1:{brand.desk_port}", timeout=10)
    token = desk.post("/desk/api/login", json={"login": "lea", "password": "demo"}).json()["token"]
    desk.headers["Authorization"] = f"Bearer {token}"
    callbacks = wait_for(lambda: desk.get("/desk/api/callbacks").json(), 20, "the callback at the desk")
    assert callbacks[0]["conversation"] == conversation
    desk.close()
