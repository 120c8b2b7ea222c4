"""Consent end to end: a brand asks for a datum, the member decides, the ledger says what the
brand knows and proves it was not edited; erasing a brand is retried until it forgets us, across
a hub restart. Against both brokers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from tests.conftest import BrandRunner, HubRunner, hub_with_brand
from tests.factories import wait_for

pytestmark = pytest.mark.e2e


def test_a_data_request_the_ledger_and_its_tamper_proof(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    client, _ = hub_with_brand(hub_runner, brands)
    granted = client.http.post("/api/brands/instant/consents", json={"scopes": {"email": "granted"}})
    assert granted.status_code == 200
    assert granted.json()["sig"]
    sent = client.send(
        "Livrez-moi, mon e-mail est lea@example.fr et mon tel 06 12 34 56 78, adresse ?", brand="instant"
    ).json()
    assert {m["kind"] for m in sent["masked"]} == {"phone"}
    conversation = sent["conversation"]
    request = wait_for(
        lambda: [
            m
            for m in client.conversation(conversation)["messages"]
            if m["direction"] == "hub" and m["extra"].get("kind") == "data_request"
        ],
        20,
        "the brand's data request",
    )[0]
    assert "votre adresse postale" in request["text"]
    answer = client.http.post(
        f"/api/data-requests/{request['extra']['request']}",
        json={"answer": "once", "value": "12 rue de la Paix, 75002 Paris"},
    )
    assert answer.status_code == 202, answer.text
    wait_for(
        lambda: any(
            r["text"] == "adresse reçue : 12 rue de la Paix, 75002 Paris"
            for r in client.replies(conversation)
        ),
        20,
        "the brand got the address",
    )
    knows = client.http.get("/api/brands/instant/knows").json()
    disclosed = {(e["scope"], e["value"]) for e in knows["entries"]}
    assert disclosed == {("email", "lea@example.fr"), ("postal_address", "12 rue de la Paix, 75002 Paris")}
    echo = next(r for r in client.replies(conversation) if r["text"].startswith("reçu"))
    assert "06 12 34 56 78" not in echo["text"]  # the brand never saw the phone number
    assert client.http.get("/api/ledger/verify").json()["ok"] is True

    with sqlite3.connect(hub_runner.data_dir / "hub.db") as db:  # someone edits the file
        db.execute("UPDATE ledger SET value = 'autre@example.fr' WHERE value = 'lea@example.fr'")
    broken = client.http.get("/api/ledger/verify").json()
    assert broken["ok"] is False
    assert broken["first_bad_seq"] == 1


def test_erase_is_asked_until_the_brand_forgets_even_across_a_hub_restart(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    client, brand = hub_with_brand(hub_runner, brands)
    client.http.post("/api/brands/instant/consents", json={"scopes": {"email": "granted"}})
    sent = client.send("mon e-mail : lea@example.fr", brand="instant").json()
    client.wait_reply(sent["conversation"])
    brand.stop()  # the brand is away when the household erases it
    wait_for(lambda: not client.brand("instant")["online"], 15, "instant offline")
    status = client.http.post("/api/brands/instant/erase").json()
    assert status["request"]
    assert status["forgotten_at"] is None
    assert client.http.get("/api/conversations").json() == []
    hub_runner.kill()  # SIGKILL with the forget request still unanswered
    client = hub_runner.start()
    assert client.http.get("/api/brands/instant/erase").json()["forgotten_at"] is None
    brand.start()
    wait_for(
        lambda: client.http.get("/api/brands/instant/erase").json()["forgotten_at"],
        30,
        "the brand's 'forgotten'",
    )
    with sqlite3.connect(hub_runner.data_dir / "hub.db") as db:
        left = db.execute("SELECT COUNT(*) FROM messages WHERE brand_id = 'instant'").fetchone()[0]
        ledger_values = db.execute("SELECT value FROM ledger WHERE brand_id = 'instant'").fetchall()
    assert left == 0
    assert all(value is None or value.isdigit() for (value,) in ledger_values)  # only the erase count
    with sqlite3.connect(brand.state) as db:
        assert db.execute("SELECT COUNT(*) FROM seen WHERE hub_id = 'test-home'").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM conversation_state").fetchone()[0] == 0
    assert client.http.get("/api/ledger/verify").json()["ok"] is True
