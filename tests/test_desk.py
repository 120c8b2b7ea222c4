"""The brand side of humans in the loop: opening hours, the SDK's hand-off flow and the desk.

The SDK tests run a real :class:`BrandApp` (with its desk served by uvicorn on this event loop)
against a real embedded broker process, and play the hub with a bare MQTT client that seals,
signs and opens envelopes with a hub identity of its own: no hub process is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from brand_adapters.desk import humans_open_now, next_opening
from brand_adapters.desk.agents import Directory, hash_agent_password
from brand_adapters.desk.page import JS
from brand_adapters.runner import serve_desk
from brand_adapters.sdk import Answer, BrandApp, Handoff, Incoming
from hub.crypto import Identity, PublicKeys
from hub.errors import ManifestError
from hub.mqtt import parse_broker_url
from hub.protocol import (
    Envelope,
    FeedbackBody,
    HandoffBody,
    Humans,
    IdeaBody,
    Manifest,
    MessageBody,
    ReplyBody,
    Topics,
    TranscriptLine,
    new_id,
)
from hub.wire import Wire
from tests.conftest import Broker, start_broker
from tests.factories import Proc, free_port, python_cmd, wait_for

PARIS = ZoneInfo("Europe/Paris")
WEEK = {
    "mon": ["09:00-19:00"],
    "tue": ["09:00-19:00"],
    "wed": ["09:00-12:30", "14:00-19:00"],
    "thu": ["09:00-19:00"],
    "fri": ["09:00-19:00"],
    "sat": ["10:00-18:00"],
}
SHOP_HOURS = Humans.model_validate({"available": True, "timezone": "Europe/Paris", "hours": WEEK})


def paris(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


# --- opening hours ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        (paris(2025, 3, 10, 9, 0), True),  # Monday at opening time
        (paris(2025, 3, 10, 18, 59), True),
        (paris(2025, 3, 10, 19, 0), False),  # closing time is closed
        (paris(2025, 3, 12, 13, 0), False),  # Wednesday lunch break
        (paris(2025, 3, 12, 14, 0), True),
        (paris(2025, 3, 15, 9, 30), False),  # Saturday opens later
        (paris(2025, 3, 16, 12, 0), False),  # Sunday: closed all day
        (datetime(2025, 3, 10, 8, 30, tzinfo=UTC), True),  # 09:30 in Paris (winter, UTC+1)
        (datetime(2025, 7, 7, 7, 30, tzinfo=UTC), True),  # 09:30 in Paris (summer, UTC+2)
        (datetime(2025, 7, 7, 6, 30, tzinfo=UTC), False),  # 08:30 in Paris
    ],
)
def test_humans_are_open_within_the_hours_of_their_own_time_zone(when: datetime, is_open: bool) -> None:
    assert humans_open_now(SHOP_HOURS, when) is is_open


def test_the_same_instant_is_open_in_paris_and_closed_in_new_york() -> None:
    instant = datetime(2025, 3, 10, 9, 30, tzinfo=UTC)  # 10:30 in Paris, 05:30 in New York
    new_york = SHOP_HOURS.model_copy(update={"timezone": "America/New_York"})
    assert humans_open_now(SHOP_HOURS, instant)
    assert not humans_open_now(new_york, instant)
    assert next_opening(new_york, instant, "en") == "today 09:00"


@pytest.mark.parametrize(
    ("when", "fr", "en"),
    [
        (paris(2025, 3, 16, 10, 0), "demain 09:00", "tomorrow 09:00"),  # Sunday → Monday
        (paris(2025, 3, 15, 18, 30), "lundi 09:00", "Monday 09:00"),  # Saturday evening → Monday
        (paris(2025, 3, 12, 12, 45), "aujourd'hui 14:00", "today 14:00"),  # lunch break
        (paris(2025, 3, 10, 7, 0), "aujourd'hui 09:00", "today 09:00"),
        (paris(2025, 3, 14, 20, 0), "demain 10:00", "tomorrow 10:00"),  # Friday night → Saturday
        (paris(2025, 3, 12, 10, 0), "aujourd'hui 14:00", "today 14:00"),  # open: the next opening after
    ],
)
def test_next_opening_says_when_in_the_members_language(when: datetime, fr: str, en: str) -> None:
    assert next_opening(SHOP_HOURS, when, "fr") == fr
    assert next_opening(SHOP_HOURS, when, "en") == en


def test_closed_days_are_skipped_to_the_next_weekday_by_name() -> None:
    weekends = Humans(available=True, hours={"sat": ["10:00-12:00"]})
    assert next_opening(weekends, paris(2025, 3, 10, 12, 0), "fr") == "samedi 10:00"
    assert next_opening(weekends, paris(2025, 3, 10, 12, 0), "en") == "Saturday 10:00"
    assert next_opening(weekends, paris(2025, 3, 15, 12, 0), "fr") == "samedi 10:00"  # a week later


def test_ranges_past_midnight_and_up_to_midnight() -> None:
    night = Humans(available=True, hours={"fri": ["22:00-02:00"], "sun": ["20:00-24:00"]})
    assert humans_open_now(night, paris(2025, 3, 14, 23, 0))
    assert humans_open_now(night, paris(2025, 3, 15, 1, 59))  # Saturday night, Friday's range
    assert not humans_open_now(night, paris(2025, 3, 15, 2, 0))
    assert humans_open_now(night, paris(2025, 3, 16, 23, 59))
    assert not humans_open_now(night, paris(2025, 3, 17, 0, 0))


def test_no_people_means_never_open_and_no_next_opening() -> None:
    nobody = SHOP_HOURS.model_copy(update={"available": False})
    assert not humans_open_now(nobody, paris(2025, 3, 10, 10, 0))
    assert next_opening(nobody, paris(2025, 3, 10, 10, 0)) is None
    assert next_opening(Humans(available=True), paris(2025, 3, 10, 10, 0)) is None
    with pytest.raises(ValueError, match="no time zone"):
        humans_open_now(SHOP_HOURS, datetime(2025, 3, 10, 10, 0))  # naive: refused


@pytest.mark.parametrize(
    ("humans", "words"),
    [
        (Humans(available=True, timezone="Mars/Olympus"), "'Mars/Olympus' is not a known time zone"),
        (Humans(available=True, hours={"mon": ["25:00-26:00"]}), "'25:00' is not a time"),
        (Humans(available=True, hours={"mon": ["10:00-10:00"]}), "'10:00-10:00': the range is empty"),
    ],
)
def test_a_manifest_with_unreadable_hours_is_refused_at_start(
    humans: Humans, words: str, tmp_path: Path
) -> None:
    manifest = _manifest("badhours", humans)
    with pytest.raises(ManifestError, match=words):
        BrandApp(manifest, broker=parse_broker_url("mqtt://127.0.0.1:1"), state_path=tmp_path / "s.db")


# --- the SDK and the desk, against a real broker --------------------------------------------------

WEDNESDAY_MORNING = paris(2025, 3, 12, 11, 0)
SUNDAY = paris(2025, 3, 16, 10, 0)
_ids = itertools.count(1)


def _manifest(brand_id: str, humans: Humans = SHOP_HOURS) -> Manifest:
    return Manifest(
        id=brand_id,
        name="Vélo Rapide",
        description={"fr": "Vélos et réparations.", "en": "Bikes and repairs."},
        humans=humans,
    )


@dataclass
class Clock:
    now: datetime = WEDNESDAY_MORNING

    def __call__(self) -> datetime:
        return self.now


async def until(predicate: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class FakeHub:
    """A household hub reduced to its wire: seals, signs, opens, and acknowledges what it gets."""

    port: int
    brand_id: str
    brand_keys: PublicKeys
    hub_id: str = "home-desk"
    identity: Identity = field(default_factory=Identity.generate)
    received: dict[str, Envelope] = field(default_factory=dict)
    client: aiomqtt.Client | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeHub]:
        wire = Wire(self.identity)
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"fake-{self.brand_id}") as client:
            self.client = client
            await client.subscribe(Topics.to_hub(self.hub_id, self.brand_id), qos=1)

            async def read() -> None:
                async for message in client.messages:
                    envelope = wire.decode(bytes(message.payload), lambda _s, _k: self.brand_keys)
                    if envelope.type != "receipt":  # as a hub does: the brand's outbox stops resending
                        await self.send("receipt", {"status": "received"}, ref=envelope.id)
                    self.received.setdefault(envelope.id, envelope)

            reader = asyncio.create_task(read())
            try:
                yield self
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def send(self, kind: str, body: Any, **fields: Any) -> Envelope:
        envelope = Envelope.model_validate(
            {"type": kind, "sender": self.hub_id, "recipient": self.brand_id, "body": body, **fields}
        )
        await self.resend(envelope)
        return envelope

    async def resend(self, envelope: Envelope) -> None:
        assert self.client is not None
        payload = Wire(self.identity).encode(envelope, self.brand_keys, with_keys=True)
        await self.client.publish(Topics.to_brand(self.brand_id, self.hub_id), payload, qos=1)

    async def say(self, conversation: str, text: str, lang: str = "fr") -> Envelope:
        return await self.send("message", MessageBody(text=text, lang=lang), conversation=conversation)

    async def ask_for_a_person(self, conversation: str, lang: str = "fr", **body: Any) -> Envelope:
        fields: dict[str, Any] = {
            "action": "request",
            "origin": "member",
            "reason": "the member asked for a person",
            "lang": lang,
            "transcript": [TranscriptLine(role="member", text="Ma roue est voilée"),
                           TranscriptLine(role="bot", text="bot: Ma roue est voilée")],
        }
        handoff = HandoffBody(**{**fields, **body})
        return await self.send("handoff", handoff, conversation=conversation)

    def of(self, kind: str, conversation: str | None = None) -> list[Envelope]:
        return [e for e in self.received.values()
                if e.type == kind and (conversation is None or e.conversation == conversation)]

    def receipt_for(self, envelope: Envelope) -> Envelope | None:
        return next((e for e in self.of("receipt") if e.ref == envelope.id), None)

    async def next(self, kind: str, conversation: str, count: int = 1) -> list[Envelope]:
        found: list[Envelope] = await until(
            lambda: (found := self.of(kind, conversation)) and len(found) >= count and found,
            f"{count} {kind} in {conversation}",
        )
        return found

    async def replied(self, conversation: str, count: int = 1) -> list[ReplyBody]:
        await self.next("reply", conversation, count)
        return self.replies(conversation)

    def handoffs(self, conversation: str) -> list[HandoffBody]:
        return [e.body for e in self.of("handoff", conversation) if isinstance(e.body, HandoffBody)]

    def replies(self, conversation: str) -> list[ReplyBody]:
        return [e.body for e in self.of("reply", conversation) if isinstance(e.body, ReplyBody)]


@dataclass
class Shop:
    app: BrandApp
    hub: FakeHub
    http: httpx.AsyncClient
    desk_url: str
    clock: Clock

    async def login(self, login: str, password: str | None = None) -> httpx.AsyncClient:
        response = await self.http.post(
            "/desk/api/login", json={"login": login, "password": password or f"{login}-secret"}
        )
        response.raise_for_status()
        assert response.json()["agent"]["login"] == login
        return httpx.AsyncClient(
            base_url=self.desk_url, headers={"Authorization": f"Bearer {response.json()['token']}"}
        )

    def events(self, client: httpx.AsyncClient) -> Any:
        url = self.desk_url.replace("http", "ws", 1) + "/desk/api/events"
        return connect(url, additional_headers={"Authorization": client.headers["authorization"]})


AGENTS = Directory.from_json(
    json.dumps(
        [
            {"login": "lea", "name": "Léa", "password_hash": hash_agent_password("lea-secret", 1000)},
            {"login": "marc", "name": "Marc", "password_hash": hash_agent_password("marc-secret", 1000)},
        ]
    )
)


async def bot(msg: Incoming) -> list[str | Answer | Handoff] | str:
    msg.state["turns"] = int(msg.state.get("turns", 0)) + 1
    if "conseiller" in msg.text:
        return ["Je vous passe un conseiller.", Handoff(reason="vélo abîmé à la livraison")]
    return f"bot: {msg.text}"


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    started = start_broker("embedded", tmp_path_factory.mktemp("desk-broker"))
    yield started
    started.proc.stop()


@contextlib.asynccontextmanager
async def shop(broker: Broker, state: Path, *, desk: bool = True, clock: Clock | None = None,
               brand_id: str | None = None, hub_identity: Identity | None = None) -> AsyncIterator[Shop]:
    clock = clock or Clock()
    brand_id = brand_id or f"velo{next(_ids)}"
    app = BrandApp(_manifest(brand_id), broker=parse_broker_url(broker.url), state_path=state, clock=clock)
    app.on_message(bot)
    port = free_port()
    fake = FakeHub(broker.port, brand_id, app.identity.public(), identity=hub_identity or Identity.generate())
    async with app, fake.running():
        await app._require_link().wait_connected(10)
        server = asyncio.create_task(serve_desk(app, AGENTS, "127.0.0.1", port)) if desk else None
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            if server is not None:
                await until(lambda: server.done() or app.desk_attached, "the desk")
                await _until_listening(http, server)
            try:
                yield Shop(app, fake, http, base, clock)
            finally:
                if server is not None:
                    server.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await server


async def _until_listening(http: httpx.AsyncClient, server: asyncio.Task[None]) -> None:
    for _ in range(200):
        if server.done():
            server.result()
        with contextlib.suppress(httpx.TransportError):
            await http.get("/desk/desk.css")
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the desk never listened")


async def _next_event(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if event["kind"] == kind:
            return event


async def _silence(seconds: float = 0.6) -> None:
    """Give a bot that should stay silent the time to speak anyway (its answers take milliseconds)."""
    await asyncio.sleep(seconds)


@pytest.mark.e2e
async def test_a_person_takes_over_answers_and_hands_back_to_the_bot(
    mqtt_broker: Broker, tmp_path: Path
) -> None:
    async with shop(mqtt_broker, tmp_path / "shop.db") as s:
        hub, conv = s.hub, new_id()
        await hub.say(conv, "Ma roue est voilée")
        assert [r.text for r in await hub.replied(conv)] == ["bot: Ma roue est voilée"]

        lea = await s.login("lea")
        async with s.events(lea) as ws:
            assert (await _next_event(ws, "hello"))["agent"] == "Léa"
            request = await hub.ask_for_a_person(conv)
            await _next_event(ws, "queue")
            await until(lambda: hub.receipt_for(request), "the receipt of the request")
            [accepted] = await hub.next("handoff", conv)
            assert accepted.ref == request.id
            assert accepted.body == HandoffBody(
                action="accepted", origin="member", lang="fr", queue_position=1, wait_s=120
            )

            [waiting] = (await lea.get("/desk/api/queue")).json()
            assert (waiting["conversation"], waiting["status"], waiting["position"]) == (conv, "waiting", 1)
            assert waiting["reason"] == "the member asked for a person"
            assert waiting["lang"] == "fr"
            assert waiting["transcript"][0] == {"role": "member", "text": "Ma roue est voilée"}

            taken = await lea.post(f"/desk/api/conversations/{conv}/take")
            assert taken.status_code == 200, taken.text
            assert (taken.json()["status"], taken.json()["agent"]) == ("taken", "Léa")
            await hub.next("handoff", conv, 2)
            joined = HandoffBody(action="accepted", origin="member", lang="fr", agent="Léa")
            assert hub.handoffs(conv)[1] == joined

            held = await hub.say(conv, "Vous êtes là ?")
            assert (await _next_event(ws, "message"))["text"] == "Vous êtes là ?"
            await until(lambda: hub.receipt_for(held), "the receipt of the held message")
            await _silence()
            assert len(hub.replies(conv)) == 1, "the bot stays silent while a person holds the conversation"
            lines = (await lea.get(f"/desk/api/conversations/{conv}")).json()["lines"]
            assert [(x["role"], x["text"]) for x in lines] == [("member", "Vous êtes là ?")]

            answer = await lea.post(f"/desk/api/conversations/{conv}/reply",
                                    json={"text": "Oui, je regarde votre commande."})
            assert answer.status_code == 200, answer.text
            await hub.next("reply", conv, 2)
            human = hub.received[answer.json()["id"]]
            assert isinstance(human.body, ReplyBody)
            assert (human.body.text, human.body.author.kind, human.body.author.name) == (
                "Oui, je regarde votre commande.", "human", "Léa")
            assert human.ref == held.id

            back = await lea.post(f"/desk/api/conversations/{conv}/release", json={"outcome": "back_to_bot"})
            assert back.json()["status"] == "bot"
            await hub.next("handoff", conv, 3)
            assert hub.handoffs(conv)[2] == HandoffBody(
                action="ended", outcome="back_to_bot", agent="Léa", lang="fr")
            assert (await lea.get("/desk/api/queue")).json() == []

        await hub.say(conv, "Merci !")
        await hub.next("reply", conv, 3)
        assert hub.replies(conv)[-1].text == "bot: Merci !"
        assert hub.replies(conv)[-1].author.kind == "bot"
        await lea.aclose()


@pytest.mark.e2e
async def test_off_hours_the_bot_stays_in_charge_and_the_hub_learns_the_next_opening(
    mqtt_broker: Broker, tmp_path: Path
) -> None:
    async with shop(mqtt_broker, tmp_path / "shop.db", clock=Clock(SUNDAY)) as s:
        hub, conv, other = s.hub, new_id(), new_id()
        request = await hub.ask_for_a_person(conv)
        [refused] = await hub.next("handoff", conv)
        assert refused.ref == request.id
        assert refused.body == HandoffBody(
            action="unavailable", origin="member", reason="the member asked for a person", lang="fr",
            next_available="demain 09:00")
        await hub.ask_for_a_person(other, lang="en")
        [english] = await hub.next("handoff", other)
        assert english.body.next_available == "tomorrow 09:00"  # type: ignore[union-attr]
        assert s.app.desk_queue() == []
        await hub.say(conv, "Tant pis")
        assert [r.text for r in await hub.replied(conv)] == ["bot: Tant pis"]
        lea = await s.login("lea")
        status = (await lea.get("/desk/api/status")).json()
        assert (status["humans_open"], status["next_available"]["fr"]) == (False, "demain 09:00")
        await lea.aclose()


@pytest.mark.e2e
async def test_without_a_desk_no_one_is_promised(mqtt_broker: Broker, tmp_path: Path) -> None:
    async with shop(mqtt_broker, tmp_path / "shop.db", desk=False) as s:
        conv = new_id()
        await s.hub.ask_for_a_person(conv)
        [refused] = await s.hub.next("handoff", conv)
        assert refused.body == HandoffBody(
            action="unavailable", origin="member", reason="the member asked for a person", lang="fr")


@pytest.mark.e2e
async def test_callbacks_ideas_and_feedback_are_kept_for_the_brand(
    mqtt_broker: Broker, tmp_path: Path
) -> None:
    async with shop(mqtt_broker, tmp_path / "shop.db", clock=Clock(SUNDAY)) as s:
        hub, conv = s.hub, new_id()
        callback = await hub.send(
            "handoff", HandoffBody(action="callback", origin="member", reason="no one was there", lang="fr"),
            conversation=conv)
        idea = await hub.send("idea", IdeaBody(text="Un atelier de réparation le dimanche ?"),
                              conversation=new_id())
        feedback = await hub.send("feedback", FeedbackBody(rating_bot=4, rating_human=5, comment="Top"),
                                  conversation=conv)
        for sent in (callback, idea, feedback):
            await until(lambda sent=sent: hub.receipt_for(sent), f"the receipt of the {sent.type}")  # type: ignore[misc]
        await hub.resend(idea)  # the hub missed our receipt and sends it again
        await until(lambda: sum(e.ref == idea.id for e in hub.of("receipt")) == 2, "a second receipt")
        assert hub.of("handoff") == [], "a callback is acknowledged, not answered"
        assert [i.text for i in s.app.ideas()] == ["Un atelier de réparation le dimanche ?"]
        assert [(f.rating_bot, f.rating_human, f.comment) for f in s.app.feedback()] == [(4, 5, "Top")]

        lea = await s.login("lea")
        [listed] = (await lea.get("/desk/api/callbacks")).json()
        assert (listed["conversation"], listed["reason"]) == (conv, "no one was there")
        assert [i["text"] for i in (await lea.get("/desk/api/ideas")).json()] == [
            "Un atelier de réparation le dimanche ?"]
        assert (await lea.get("/desk/api/feedback")).json()[0]["rating_human"] == 5

        # An agent answers the callback in its conversation: the hub hears who.
        s.clock.now = WEDNESDAY_MORNING
        answered = await lea.post(f"/desk/api/callbacks/{callback.id}/take")
        assert answered.json()["status"] == "taken", answered.text
        [joined] = await hub.next("handoff", conv)
        assert (joined.body.action, joined.body.agent) == ("accepted", "Léa")  # type: ignore[union-attr]
        assert (await lea.get("/desk/api/callbacks")).json() == []
        await lea.aclose()


@pytest.mark.e2e
async def test_two_agents_cannot_take_the_same_conversation(mqtt_broker: Broker, tmp_path: Path) -> None:
    async with shop(mqtt_broker, tmp_path / "shop.db") as s:
        hub, first, second = s.hub, new_id(), new_id()
        await hub.ask_for_a_person(first)
        await hub.next("handoff", first)
        await hub.ask_for_a_person(second)
        [queued] = await hub.next("handoff", second)
        assert (queued.body.queue_position, queued.body.wait_s) == (2, 240)  # type: ignore[union-attr]
        lea, marc = await s.login("lea"), await s.login("marc")
        race = await asyncio.gather(lea.post(f"/desk/api/conversations/{first}/take"),
                                    marc.post(f"/desk/api/conversations/{first}/take"))
        assert sorted(r.status_code for r in race) == [200, 409]
        [lost] = [r for r in race if r.status_code == 409]
        assert lost.json()["error"] == "conflict"
        winner = next(r for r in race if r.status_code == 200).json()["agent"]
        loser = marc if winner == "Léa" else lea
        assert "taken by" in lost.json()["message"]
        refused = await loser.post(f"/desk/api/conversations/{first}/reply", json={"text": "Je prends !"})
        assert refused.status_code == 409
        refused = await loser.post(f"/desk/api/conversations/{first}/release", json={"outcome": "closed"})
        assert refused.status_code == 409
        assert (await loser.post(f"/desk/api/conversations/{second}/take")).status_code == 200
        await hub.next("handoff", first, 2)
        await hub.next("handoff", second, 2)
        assert [h.agent for h in hub.handoffs(first)] == [None, winner], "one agent announced, once"
        queue = (await lea.get("/desk/api/queue")).json()
        assert {(c["conversation"], c["status"]) for c in queue} == {(first, "taken"), (second, "taken")}
        missing = await lea.post(f"/desk/api/conversations/{new_id()}/take")
        assert (missing.status_code, missing.json()["error"]) == (404, "unknown_conversation")
        await lea.aclose()
        await marc.aclose()


@pytest.mark.e2e
async def test_the_desk_needs_a_login_and_renders_the_queue(mqtt_broker: Broker, tmp_path: Path) -> None:
    async with shop(mqtt_broker, tmp_path / "shop.db") as s:
        conv = new_id()
        await s.hub.ask_for_a_person(conv, reason="Question sur une garantie <b>cadre</b>")
        await s.hub.next("handoff", conv)
        http = s.http
        for method, path in [("GET", "/desk/api/queue"), ("POST", f"/desk/api/conversations/{conv}/take"),
                             ("GET", "/desk/api/ideas"), ("GET", "/desk/api/callbacks"),
                             ("GET", "/desk/partials/live")]:
            response = await http.request(method, path)
            assert response.status_code == 401, path
            assert response.json()["error"] == "unauthorized"
        stranger = await http.get("/desk/api/queue", headers={"Authorization": "Bearer not-a-token"})
        assert stranger.status_code == 401
        wrong = await http.post("/desk/api/login", json={"login": "lea", "password": "nope"})
        assert wrong.status_code == 401
        with pytest.raises(InvalidStatus):
            async with connect(s.desk_url.replace("http", "ws", 1) + "/desk/api/events"):
                pass

        login_form = await http.get("/desk")
        assert 'name="password"' in login_form.text
        assert "Vélo Rapide" in login_form.text
        bad_form = await http.post("/desk/login", content=b"login=lea&password=nope",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert bad_form.status_code == 401
        assert "Wrong login or password" in bad_form.text
        form = await http.post("/desk/login", content=b"login=lea&password=lea-secret",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 303
        cookie = form.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        page = await http.get("/desk")
        assert page.status_code == 200
        assert "File d'attente" in page.text
        assert "Léa" in page.text
        assert "Question sur une garantie &lt;b&gt;cadre&lt;/b&gt;" in page.text  # escaped, never markup
        assert f'data-action="take" data-conv="{conv}"' in page.text
        assert "Idées des clients" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert (await http.get("/desk/desk.js")).text == JS
        # The cookie works for the page's own calls, and not from another site.
        assert (await http.get("/desk/api/queue")).status_code == 200
        forged = await http.post(f"/desk/api/conversations/{conv}/take",
                                 headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403
        assert s.app.desk_conversation(conv).status == "waiting"


@pytest.mark.e2e
async def test_a_bot_hands_over_and_then_stays_silent(mqtt_broker: Broker, tmp_path: Path) -> None:
    async with shop(mqtt_broker, tmp_path / "shop.db") as s:
        hub, conv = s.hub, new_id()
        await hub.say(conv, "Mon vélo est arrivé cassé, je veux un conseiller")
        [said] = await hub.replied(conv)
        assert said.text == "Je vous passe un conseiller."
        [handoff] = await hub.next("handoff", conv)
        assert handoff.body == HandoffBody(
            action="accepted", origin="bot", lang="fr", queue_position=1, wait_s=120)
        [queued] = s.app.desk_queue()
        assert (queued.origin, queued.reason) == ("bot", "vélo abîmé à la livraison")
        assert queued.transcript == (
            {"role": "member", "text": "Mon vélo est arrivé cassé, je veux un conseiller"},
            {"role": "bot", "text": "Je vous passe un conseiller."},
        )
        await hub.say(conv, "Alors ?")
        await until(lambda: s.app.desk_conversation(conv).lines, "the held message at the desk")
        await _silence()
        assert len(hub.replies(conv)) == 1


@pytest.mark.e2e
async def test_the_queue_survives_a_restart_and_the_member_can_close(
    mqtt_broker: Broker, tmp_path: Path
) -> None:
    state, brand_id, conv, home = tmp_path / "shop.db", f"velo{next(_ids)}", new_id(), Identity.generate()
    async with shop(mqtt_broker, state, brand_id=brand_id, hub_identity=home) as s:
        await s.hub.ask_for_a_person(conv)
        await s.hub.next("handoff", conv)
        await s.hub.say(conv, "J'attends")
        await until(lambda: s.app.desk_conversation(conv).lines, "the held message")
    async with shop(mqtt_broker, state, brand_id=brand_id, hub_identity=home) as s:
        [kept] = s.app.desk_queue()
        assert (kept.conversation, kept.status, kept.position) == (conv, "waiting", 1)
        assert [line.text for line in kept.lines] == ["J'attends"]
        await s.hub.say(conv, "Toujours là")
        await until(lambda: len(s.app.desk_conversation(conv).lines) == 2, "the second held message")
        ended = await s.hub.send("handoff", HandoffBody(action="ended", outcome="closed"), conversation=conv)
        await until(lambda: s.hub.receipt_for(ended), "the receipt of ended")
        assert s.app.desk_conversation(conv).status == "closed"
        assert s.app.desk_queue() == []
        await s.hub.say(conv, "Finalement, une autre question")
        assert [r.text for r in await s.hub.replied(conv)] == ["bot: Finalement, une autre question"]
        assert s.hub.of("handoff", conv) == [], "the member closed it: nothing to announce back"


def test_foyer_brand_run_serves_the_demo_desk_for_lea(mqtt_broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    agents = Path(__file__).resolve().parent.parent / "brand_adapters" / "sportissimo" / "agents.json"
    args = python_cmd("brand", "run", "sportissimo", "--broker", mqtt_broker.url,
                      "--state", str(tmp_path / "sportissimo.db"),
                      "--desk-port", str(port), "--desk-agents", str(agents))
    proc = Proc("brand-sportissimo-desk", args, tmp_path / "brand-desk.log").start()
    try:
        wait_for(lambda: f"desk ready on http://127.0.0.1:{port}/desk" in proc.output(), 20, "the desk")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            login = http.post("/desk/api/login", json={"login": "lea", "password": "demo"})
            assert login.status_code == 200, login.text
            assert login.json()["agent"] == {"login": "lea", "name": "Léa"}
            me = http.get("/desk/api/me", headers={"Authorization": f"Bearer {login.json()['token']}"})
            assert me.json()["name"] == "Léa"
    finally:
        proc.stop()
    missing = subprocess.run(python_cmd("brand", "run", "sportissimo", "--desk-port", str(port)),
                             capture_output=True, text=True, timeout=30, check=False)
    assert missing.returncode == 2
    assert "--desk-agents" in missing.stderr


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing: scripts/test installs Debian's chromium package")
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    return CHROMIUM


@pytest.mark.e2e
async def test_an_agent_works_the_queue_in_a_real_browser(
    mqtt_broker: Broker, tmp_path: Path, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    async with shop(mqtt_broker, tmp_path / "shop.db") as s, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, headless=True,
                                          args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = await browser.new_page(locale="fr-FR")
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        await page.goto(s.desk_url + "/desk")
        await page.get_by_label("Identifiant").fill("lea")
        await page.get_by_label("Mot de passe").fill("lea-secret")
        await page.get_by_role("button", name="Se connecter").click()
        await page.get_by_text("Personne n'attend").wait_for()
        await page.locator("#link.online").wait_for()

        conv = new_id()  # a member asks while the page is open: it appears without a reload
        await s.hub.ask_for_a_person(conv, reason="Garantie du cadre")
        card = page.locator(f"#c-{conv}")
        await card.get_by_text("Garantie du cadre").wait_for()
        assert await page.title() == "(1) Vélo Rapide — Espace conseillers"
        await card.get_by_role("button", name="Prendre").click()
        await card.locator("textarea").wait_for()
        await s.hub.next("handoff", conv, 2)
        assert s.hub.handoffs(conv)[1].agent == "Léa"

        await s.hub.say(conv, "Le cadre est fendu")
        await card.get_by_text("Le cadre est fendu").wait_for()
        await card.locator("textarea").fill("Je vous envoie un bon d'échange.")
        await card.locator("textarea").press("Control+Enter")
        await card.get_by_text("Je vous envoie un bon d'échange.").wait_for()
        await s.hub.next("reply", conv)
        assert s.hub.replies(conv)[0].author.name == "Léa"
        await page.screenshot(path=str(tmp_path / "desk.png"), full_page=True)
        await card.get_by_role("button", name="Rendre au bot").click()
        await page.get_by_text("Personne n'attend").wait_for()
        await s.hub.next("handoff", conv, 3)
        assert s.hub.handoffs(conv)[2].outcome == "back_to_bot"
        assert problems == [], "no script error, no refused resource"
        await browser.close()
