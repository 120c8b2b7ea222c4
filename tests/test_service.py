"""The hub core behind a fake MQTT link: persistence, outbox, receipts, dedup and bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.consent import verify_receipt
from hub.crypto import CannotOpen, Identity, b64encode
from hub.errors import AmbiguousBrand, InvalidConsent, NotOptedIn, UnknownBrand, UnknownConversation
from hub.protocol import (
    MAX_PAYLOAD_BYTES,
    Author,
    DataRequestBody,
    DataResponseBody,
    Envelope,
    ErrorBody,
    FeedbackBody,
    ForgottenBody,
    HandoffBody,
    IdeaBody,
    LocalizedText,
    Manifest,
    MessageBody,
    NotificationBody,
    PresenceBody,
    ReceiptBody,
    ReplyBody,
    ScopeRequest,
    Topics,
    new_id,
)
from hub.service import Hub
from hub.store import Store
from hub.wire import Wire

TEXT = LocalizedText(fr="x", en="x")
HUB_ID = Identity.generate()
BRAND_IDS = {"shop": Identity.generate(), "other": Identity.generate(), "nobody": Identity.generate()}
SHOP = Manifest(id="shop", name="Boutique Test", description=TEXT, keys=BRAND_IDS["shop"].public().as_dict())
OTHER = Manifest(
    id="other", name="Autre Marque", description=TEXT, keys=BRAND_IDS["other"].public().as_dict()
)


class FakeLink:
    """Records what the hub publishes; always connected."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, object]]] = []
        self.subscriptions: set[str] = set()

    @property
    def connected(self) -> bool:
        return True

    async def subscribe(self, topic: str) -> None:
        self.subscriptions.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self.subscriptions.discard(topic)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.published.append((topic, json.loads(payload)))

    def of_type(self, kind: str) -> list[dict[str, object]]:
        return [p for _, p in self.published if p["type"] == kind]

    def opened(self, kind: str, brand_id: str = "shop") -> list[Envelope]:
        """What the brand reads: each envelope of ``kind`` verified and opened with its keys."""
        wire = Wire(BRAND_IDS[brand_id])
        return [
            wire.decode(json.dumps(p).encode(), lambda _s, _k: HUB_ID.public()) for p in self.of_type(kind)
        ]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    with Store(tmp_path / "hub.db") as store:
        link = FakeLink()
        async with Hub(
            store, hub_id="home", directory=[SHOP, OTHER], link_factory=lambda _: link, identity=HUB_ID
        ) as h:
            await h.opt_in("shop")
            yield h


def fake(hub: Hub) -> FakeLink:
    link = hub.link
    assert isinstance(link, FakeLink)
    return link


def sealed(envelope: Envelope, by: str = "shop") -> bytes:
    """The envelope as the brand ``by`` puts it on the wire: sealed for the hub, signed by ``by``."""
    return Wire(BRAND_IDS[by]).encode(envelope, HUB_ID.public())


async def online(hub: Hub, brand_id: str = "shop") -> None:
    presence = Envelope(type="presence", sender=brand_id, body=PresenceBody(status="online"))
    await hub.on_mqtt(Topics.status(brand_id), sealed(presence, brand_id), True)


async def from_brand(hub: Hub, envelope: Envelope | bytes, brand_id: str = "shop") -> None:
    payload = envelope if isinstance(envelope, bytes) else sealed(envelope, brand_id)
    await hub.on_mqtt(Topics.to_hub("home", brand_id), payload, False)


def reply_to(conversation: str, text: str = "Bonjour !", **fields: object) -> Envelope:
    return Envelope(
        type="reply",
        sender="shop",
        recipient="home",
        conversation=conversation,
        body=ReplyBody(text=text, author=Author(name="Bot")),
        **fields,
    )  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_opt_in_subscribes_only_to_that_brand(hub: Hub) -> None:
    directory = Topics.ALL_MANIFESTS
    assert fake(hub).subscriptions == {directory, Topics.to_hub("home", "shop"), Topics.status("shop")}
    await hub.opt_out("shop")
    assert fake(hub).subscriptions == {directory}


async def test_a_brand_announcing_its_manifest_joins_the_directory_not_the_household(hub: Hub) -> None:
    acme = Manifest(id="acme", name="Acmé Services", aliases=["acme"], description=TEXT)
    await hub.on_mqtt(Topics.manifest("acme"), acme.model_dump_json().encode(), True)
    assert hub.brand("acme").manifest == acme
    assert hub.brand("acme").opted_in is False
    with pytest.raises(NotOptedIn):
        await hub.send("une question pour acme")
    await hub.on_mqtt(Topics.manifest("acme"), b'{"id": "acme"}', True)
    await hub.on_mqtt(Topics.manifest("evil"), acme.model_dump_json().encode(), True)
    assert hub.refused["invalid_manifest"] == 2
    assert hub.store.brand("evil") is None


async def test_message_to_offline_brand_is_kept_then_published_when_it_returns(hub: Hub) -> None:
    result = await hub.send("Où est mon colis ?", brand_id="shop")
    assert result.message.status == "queued"
    assert result.notice is not None
    assert "Boutique Test est hors ligne" in result.notice
    await settle()
    assert fake(hub).of_type("message") == []
    await online(hub)
    await settle()
    published = fake(hub).of_type("message")
    assert [p["id"] for p in published] == [result.message.id]
    assert hub.store.message(result.message.id).status == "sent"  # type: ignore[union-attr]
    receipt = Envelope(type="receipt", sender="shop", ref=result.message.id, body=ReceiptBody())
    await from_brand(hub, receipt)
    assert hub.store.message(result.message.id).status == "delivered"  # type: ignore[union-attr]
    assert hub.store.outbox.pending() == 0


async def test_a_redelivered_reply_is_stored_once_and_acknowledged_each_time(hub: Hub) -> None:
    await online(hub)
    sent = await hub.send("Bonjour", brand_id="shop")
    reply = reply_to(sent.message.conversation_id)
    await from_brand(hub, reply)
    await from_brand(hub, reply)
    await settle()  # receipts go out in the background
    messages = hub.store.messages(sent.message.conversation_id)
    assert [m.direction for m in messages] == ["out", "in"]
    assert [r["ref"] for r in fake(hub).of_type("receipt")] == [reply.id, reply.id]
    assert hub.refused["replayed"] == 1  # seen before: acknowledged again, stored once


async def test_notifications_open_their_own_conversation(hub: Hub) -> None:
    note = Envelope(
        type="notification",
        sender="shop",
        recipient="home",
        body=NotificationBody(text="Votre colis est parti.", category="transactional"),
    )
    await from_brand(hub, note)
    [row] = hub.store.notifications()
    assert row.text == "Votre colis est parti."
    assert row.extra["category"] == "transactional"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{oops", "malformed_json"),
        (b'{"v": 9, "type": "reply"}', "unsupported_version"),
        (b'{"v": 1, "type": "hologram", "id": "0123456789"}', "unknown_type"),
        (b'{"v": 1, "type": "reply", "id": "0123456789", "sender": "shop", "body": {}}', "invalid_envelope"),
        (b"x" * (MAX_PAYLOAD_BYTES + 10), "too_large"),
    ],
)
async def test_bad_payloads_are_refused_counted_and_answered(hub: Hub, payload: bytes, code: str) -> None:
    await online(hub)
    kept = await hub.send("Un message déjà accepté", brand_id="shop")
    await from_brand(hub, payload)
    assert hub.refused[code] == 1
    [error] = fake(hub).opened("error")
    assert isinstance(error.body, ErrorBody)
    assert error.body.code == code
    assert error.ref is None  # an unverified envelope's id is never echoed
    assert hub.store.message(kept.message.id) is not None
    assert hub.health()["refused_total"] == 1


async def test_reply_in_unknown_conversation_is_refused(hub: Hub) -> None:
    await from_brand(hub, reply_to(new_id()))
    assert hub.refused["unknown_conversation"] == 1
    [error] = fake(hub).opened("error")
    assert error.body == ErrorBody(code="unknown_conversation", message=error.body.message)  # type: ignore[union-attr]


async def test_a_brand_cannot_speak_in_another_brands_conversation(hub: Hub) -> None:
    await hub.opt_in("other")
    sent = await hub.send("Bonjour", brand_id="other")
    await from_brand(hub, reply_to(sent.message.conversation_id))
    assert hub.refused["unknown_conversation"] == 1
    assert len(hub.store.messages(sent.message.conversation_id)) == 1


async def test_sender_must_match_the_topic(hub: Hub) -> None:
    sent = await hub.send("Bonjour", brand_id="shop")
    forged = Envelope(
        type="reply",
        sender="other",
        conversation=sent.message.conversation_id,
        body=ReplyBody(text="je suis shop", author=Author(name="x")),
    )
    await from_brand(hub, forged)
    assert hub.refused["invalid_envelope"] == 1


async def test_messages_from_a_brand_not_opted_in_are_refused(hub: Hub) -> None:
    note = Envelope(type="notification", sender="other", body=NotificationBody(text="Promo !"))
    await from_brand(hub, note, brand_id="other")
    assert hub.refused["not_opted_in"] == 1
    assert hub.store.notifications() == []
    await from_brand(hub, note, brand_id="nobody")
    assert hub.refused["not_opted_in"] == 2


async def test_send_refuses_what_it_cannot_route(hub: Hub) -> None:
    with pytest.raises(UnknownBrand, match="'nope'"):
        await hub.send("x", brand_id="nope")
    with pytest.raises(NotOptedIn, match="'other' is not opted in"):
        await hub.send("x", brand_id="other")
    with pytest.raises(UnknownConversation):
        await hub.send("x", conversation_id=new_id())
    with pytest.raises(AmbiguousBrand):
        await hub.send("bonjour")
    assert (await hub.send("Boutique Test : ma commande ?")).brand.id == "shop"


async def test_bad_topics_never_crash_the_hub(hub: Hub) -> None:
    await hub.on_mqtt("foyer/v1/hub/someone-else/from/shop", b"{}", False)
    await hub.on_mqtt("random/topic", b"{}", False)
    assert hub.refused["bad_topic"] == 2


async def test_every_change_is_visible_in_order_to_a_client_that_reconnects(hub: Hub) -> None:
    await online(hub)
    sent = await hub.send("Bonjour", brand_id="shop")
    mark = hub.store.last_seq
    await from_brand(hub, Envelope(type="receipt", sender="shop", ref=sent.message.id, body=ReceiptBody()))
    await from_brand(hub, reply_to(sent.message.conversation_id))
    changes = hub.store.changes_since(mark)
    assert [(c.direction, c.status) for c in changes] == [("out", "delivered"), ("in", "received")]


async def test_a_backlog_for_an_offline_brand_never_holds_up_an_online_one(hub: Hub) -> None:
    await hub.opt_in("other")
    for n in range(150):
        await hub.send(f"message {n}", brand_id="shop")  # shop is offline: all queued
    await online(hub, "other")
    sent = await hub.send("pour l'autre marque", brand_id="other")
    await settle()
    assert [p["id"] for p in fake(hub).of_type("message")] == [sent.message.id]


async def test_a_receipt_from_another_brand_does_not_settle_a_message(hub: Hub) -> None:
    await hub.opt_in("other")
    await online(hub)
    sent = await hub.send("Bonjour", brand_id="shop")
    await settle()
    receipt = Envelope(type="receipt", sender="other", ref=sent.message.id, body=ReceiptBody())
    await from_brand(hub, receipt, brand_id="other")
    assert hub.store.message(sent.message.id).status == "sent"  # type: ignore[union-attr]
    assert hub.store.outbox.pending("shop") == 1


async def test_opting_out_cancels_what_was_waiting(hub: Hub) -> None:
    queued = await hub.send("Bonjour", brand_id="shop")
    await hub.opt_out("shop")
    assert hub.store.message(queued.message.id).status == "cancelled"  # type: ignore[union-attr]
    assert hub.store.outbox.pending() == 0


async def test_a_slow_listener_is_told_to_resync(hub: Hub) -> None:
    async with hub.listen() as queue:
        for n in range(1100):
            hub._emit("message", {"n": n})
        assert queue.qsize() == 1
        assert queue.get_nowait()["event"] == "overflow"


async def test_changes_come_in_pages_without_gaps(hub: Hub) -> None:
    for n in range(7):
        await hub.send(f"m{n}", brand_id="shop")
    seen: list[int] = []
    since = 0
    while page := hub.store.changes_since(since, limit=3):
        seen += [row.seq for row in page]
        since = page[-1].seq
    assert seen == sorted(set(seen))
    assert len(seen) == 7


async def test_a_reply_reusing_a_member_message_id_is_refused(hub: Hub) -> None:
    sent = await hub.send("Bonjour", brand_id="shop")
    await from_brand(hub, reply_to(sent.message.conversation_id, id=sent.message.id))
    assert hub.refused["invalid_envelope"] == 1


async def test_absurd_json_is_refused_not_crashed_on(hub: Hub) -> None:
    await from_brand(hub, b"[" * 60_000)
    await from_brand(hub, b'{"v": 1, "n": ' + b"9" * 5000 + b"}")
    assert hub.refused["malformed_json"] == 2


# --- sealing, signatures, replay ----------------------------------------------------------


async def test_what_the_hub_publishes_is_sealed_for_the_brand_alone(hub: Hub) -> None:
    await online(hub)
    await hub.send("Mon IBAN est secret, ma commande 4821", brand_id="shop")
    await settle()
    [topic_and_payload] = [p for p in fake(hub).published if p[1]["type"] == "message"]
    wire_json = json.dumps(topic_and_payload[1])
    assert "4821" not in wire_json
    assert "body" not in topic_and_payload[1]
    [message] = fake(hub).opened("message")
    assert message.body.text == "Mon IBAN est secret, ma commande 4821"  # type: ignore[union-attr]
    with pytest.raises(CannotOpen):
        fake(hub).opened("message", brand_id="other")


def _tamper(payload: bytes, field: str, value: object) -> bytes:
    raw = json.loads(payload)
    raw[field] = value
    return json.dumps(raw).encode()


async def test_forged_tampered_replayed_or_expired_envelopes_never_reach_a_conversation(hub: Hub) -> None:
    await online(hub)
    sent = await hub.send("Bonjour", brand_id="shop")
    conversation = sent.message.conversation_id
    good = sealed(reply_to(conversation, "vraie réponse"))
    ciphertext = json.loads(good)["sealed"]
    flipped = ciphertext[:10] + ("A" if ciphertext[10] != "A" else "B") + ciphertext[11:]
    attempts = {
        "bad_signature": [
            _tamper(good, "sealed", flipped),  # tampered ciphertext
            _tamper(good, "conversation", new_id()),  # tampered header
            sealed(reply_to(conversation, "je suis shop"), by="other"),  # wrong signer
            _tamper(good, "sig", None),  # unsigned
        ],
        "expired": [sealed(reply_to(conversation, "vieux", ts=1_000))],
    }
    for code, payloads in attempts.items():
        for payload in payloads:
            await from_brand(hub, payload)
        assert hub.refused[code] == len(payloads), (code, hub.refused)
    assert [m.direction for m in hub.store.messages(conversation)] == ["out"]
    errors = fake(hub).opened("error")  # a forgery is never answered; the expired reply is
    assert [e.body.code for e in errors] == ["expired"]  # type: ignore[union-attr]
    await from_brand(hub, good)
    await from_brand(hub, good)  # a replay of a real reply
    assert [m.text for m in hub.store.messages(conversation)] == ["Bonjour", "vraie réponse"]
    assert hub.refused["replayed"] == 1


async def test_a_brand_whose_keys_changed_is_held_until_the_household_approves(hub: Hub) -> None:
    await online(hub)
    new_identity = Identity.generate()
    changed = SHOP.model_copy(update={"keys": new_identity.public().as_dict()})
    await hub.on_mqtt(Topics.manifest("shop"), changed.model_dump_json().encode(), True)
    brand = hub.brand("shop")
    assert brand.pinned == BRAND_IDS["shop"].public()
    assert brand.pending == new_identity.public()
    sent = await hub.send("Bonjour", brand_id="shop")
    forged = Wire(new_identity).encode(reply_to(sent.message.conversation_id), HUB_ID.public())
    await from_brand(hub, forged)
    assert hub.refused["bad_signature"] == 1
    hub.approve_keys("shop")
    assert hub.brand("shop").pinned == new_identity.public()
    await from_brand(hub, forged)
    assert len(hub.store.messages(sent.message.conversation_id)) == 2


async def test_a_brand_with_no_pinned_keys_is_not_sent_anything(tmp_path: Path) -> None:
    keyless = Manifest(id="keyless", name="Sans Clés", description=TEXT)
    with Store(tmp_path / "hub.db") as store:
        link = FakeLink()
        async with Hub(
            store, hub_id="home", directory=[keyless], link_factory=lambda _: link, identity=HUB_ID
        ) as hub:
            await hub.opt_in("keyless")
            presence = Envelope(type="presence", sender="keyless", body=PresenceBody(status="online"))
            await hub.on_mqtt(
                Topics.status("keyless"), Wire(BRAND_IDS["nobody"]).encode(presence, None), True
            )
            sent = await hub.send("Bonjour", brand_id="keyless")
            await settle()
            assert link.of_type("message") == []
            assert hub.store.message(sent.message.id).status == "queued"  # type: ignore[union-attr]
            announced = keyless.model_copy(update={"keys": BRAND_IDS["nobody"].public().as_dict()})
            await hub.on_mqtt(Topics.manifest("keyless"), announced.model_dump_json().encode(), True)
            await settle()
            assert hub.brand("keyless").online  # its presence is checked again once keys are pinned
            assert len(link.of_type("message")) == 1


async def test_an_opted_in_brand_without_pinned_keys_cannot_speak(tmp_path: Path) -> None:
    keyless = Manifest(id="keyless", name="Sans Clés", description=TEXT)
    with Store(tmp_path / "hub.db") as store:
        link = FakeLink()
        async with Hub(
            store, hub_id="home", directory=[keyless], link_factory=lambda _: link, identity=HUB_ID
        ) as hub:
            await hub.opt_in("keyless")
            note = Envelope(type="notification", sender="keyless", body=NotificationBody(text="Promo"))
            payload = Wire(BRAND_IDS["nobody"]).encode(note, HUB_ID.public())
            await hub.on_mqtt(Topics.to_hub("home", "keyless"), payload, False)
            assert hub.refused["unknown_key"] == 1
            assert hub.store.notifications() == []
            assert link.of_type("error") == []


envelope_fields = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), st.integers(), st.text(max_size=3)),
        "id": st.one_of(st.uuids().map(str), st.text(max_size=70)),
        "type": st.sampled_from(["message", "reply", "notification", "receipt", "error", "presence", "x"]),
        "sender": st.sampled_from(["shop", "other", "home", "", "SHOP"]),
        "recipient": st.sampled_from(["home", "shop", None]),
        "conversation": st.one_of(st.none(), st.uuids().map(str), st.text(max_size=10)),
        "ref": st.one_of(st.none(), st.uuids().map(str)),
        "ts": st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=5)),
        "body": st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4)),
        "sealed": st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=120).map(b64encode)),
        "sig": st.one_of(
            st.none(), st.text(max_size=100), st.binary(min_size=64, max_size=64).map(b64encode)
        ),
        "keys": st.one_of(st.none(), st.dictionaries(st.sampled_from(["sign", "box"]), st.text(max_size=50))),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(st.binary(max_size=400), envelope_fields.map(lambda d: json.dumps(d).encode())))
def test_arbitrary_input_never_crashes_the_hub_or_gets_in(
    tmp_path_factory: pytest.TempPathFactory, payload: bytes
) -> None:
    async def scenario() -> None:
        with Store(tmp_path_factory.mktemp("fuzz") / "hub.db") as store:
            link = FakeLink()
            async with Hub(
                store, hub_id="home", directory=[SHOP, OTHER], link_factory=lambda _: link, identity=HUB_ID
            ) as hub:
                await hub.opt_in("shop")
                sent = await hub.send("Bonjour", brand_id="shop")
                for topic in (Topics.to_hub("home", "shop"), Topics.status("shop"), Topics.manifest("shop")):
                    await hub.on_mqtt(topic, payload, False)
                assert len(hub.store.messages(sent.message.conversation_id)) == 1
                assert hub.store.notifications() == []
                assert hub.store.message(sent.message.id).status == "queued"  # type: ignore[union-attr]
                assert not hub.brand("shop").online

    asyncio.run(scenario())


# --- humans in the loop and satisfaction ---------------------------------------------------


def handoff_from_brand(conversation: str, **fields: object) -> Envelope:
    return Envelope(
        type="handoff", sender="shop", recipient="home", conversation=conversation, body=HandoffBody(**fields)
    )  # type: ignore[arg-type]


def notes(hub: Hub, conversation: str) -> list[str]:
    return [m.extra["kind"] for m in hub.store.messages(conversation) if m.direction == "hub"]


async def test_asking_for_a_person_sends_a_handoff_not_a_message_for_the_bot(hub: Hub) -> None:
    await online(hub)
    first = await hub.send("Où est ma commande 4821 ?", brand_id="shop")
    conversation = first.message.conversation_id
    await from_brand(hub, reply_to(conversation, "Elle est en route."))
    asked = await hub.send("je veux parler a un conseiller svp", conversation_id=conversation)
    assert asked.message.type == "handoff"
    await settle()
    [handoff] = fake(hub).opened("handoff")
    assert isinstance(handoff.body, HandoffBody)
    assert (handoff.body.action, handoff.body.origin, handoff.body.lang) == ("request", "member", "fr")
    assert [(t.role, t.text) for t in handoff.body.transcript] == [
        ("member", "Où est ma commande 4821 ?"),
        ("bot", "Elle est en route."),
        ("member", "je veux parler a un conseiller svp"),
    ]
    assert len(fake(hub).opened("message")) == 1  # the bot never got the request
    assert hub.store.conversation(conversation)["state"] == "waiting_human"
    await from_brand(hub, handoff_from_brand(conversation, action="accepted", queue_position=2, wait_s=240))
    await from_brand(hub, handoff_from_brand(conversation, action="accepted", agent="Léa"))
    assert notes(hub, conversation) == ["human_queued", "human_joined"]
    joined = hub.store.messages(conversation)[-1]
    assert joined.text == "Léa, de chez Boutique Test, a rejoint la conversation."
    human = reply_to(conversation, "Bonjour, c'est Léa.")
    human = human.model_copy(
        update={"body": ReplyBody(text="Bonjour, c'est Léa.", author=Author(kind="human", name="Léa"))}
    )
    await from_brand(hub, human)
    await from_brand(hub, handoff_from_brand(conversation, action="ended", outcome="closed"))
    await settle()
    assert hub.store.conversation(conversation)["state"] == "closed"
    prompt = hub.store.messages(conversation)[-1]
    assert prompt.extra == {"kind": "rating_prompt", "parts": ["bot", "human"]}
    assert "l'assistant et le conseiller séparément" in prompt.text
    [stats] = hub.service_stats()
    assert stats["needed_human"] == 1.0
    assert stats["time_to_human_ms"] is not None
    assert stats["first_response_ms"] is not None


async def test_no_one_there_means_hours_channels_and_a_callback(hub: Hub) -> None:
    await online(hub)
    first = await hub.send("I want to talk to a real person please", brand_id="shop", lang="en")
    conversation = first.message.conversation_id
    await from_brand(
        hub, handoff_from_brand(conversation, action="unavailable", lang="en", next_available="Monday 09:00")
    )
    note = hub.store.messages(conversation)[-1]
    assert note.text.startswith(
        "No one at Boutique Test is available right now. They will be back Monday 09:00."
    )
    assert note.extra["callback"] is True
    assert hub.store.conversation(conversation)["state"] == "bot"
    await hub.request_callback(conversation, lang="en")
    await settle()
    assert [h.body.action for h in fake(hub).opened("handoff")] == ["request", "callback"]  # type: ignore[union-attr]


async def test_ratings_stay_home_unless_the_household_shares_them(hub: Hub) -> None:
    await online(hub)
    sent = await hub.send("Bonjour", brand_id="shop")
    conversation = sent.message.conversation_id
    await from_brand(hub, reply_to(conversation))
    await hub.close(conversation)
    assert notes(hub, conversation) == ["rating_prompt"]
    await hub.rate(conversation, rating_bot=4, comment="rapide")
    await settle()
    assert hub.store.rating(conversation)["shared"] == 0  # type: ignore[index]
    assert fake(hub).of_type("feedback") == []
    hub.store.set_share_satisfaction("shop", True)
    second = await hub.send("Encore moi", brand_id="shop")
    await hub.close(second.message.conversation_id)
    await hub.rate(second.message.conversation_id, rating_bot=2)
    await settle()
    [feedback] = fake(hub).opened("feedback")
    assert feedback.body == FeedbackBody(rating_bot=2)
    assert hub.service_stats()[0]["satisfaction"] == 3.0


async def test_the_hub_offers_a_person_when_the_bot_keeps_failing(hub: Hub) -> None:
    await online(hub)
    sent = await hub.send("Ma facture est fausse", brand_id="shop")
    conversation = sent.message.conversation_id
    await from_brand(hub, reply_to(conversation, "Je n'ai pas compris votre demande."))
    await hub.send("Ma facture est fausse !", conversation_id=conversation)
    await from_brand(hub, reply_to(conversation, "Désolé, je n'ai pas compris. Pouvez-vous reformuler ?"))
    await hub.send("MA FACTURE EST FAUSSE, c'est inadmissible", conversation_id=conversation)
    assert "offer_human" in notes(hub, conversation)


async def test_ideas_reach_the_brand_and_its_receipt_acknowledges_them(hub: Hub) -> None:
    await online(hub)
    sent = await hub.send_idea("shop", "Proposez des sacs réutilisables en caisse")
    await settle()
    [idea] = fake(hub).opened("idea")
    assert idea.body == IdeaBody(text="Proposez des sacs réutilisables en caisse", lang="fr")
    await from_brand(hub, Envelope(type="receipt", sender="shop", ref=sent.message.id, body=ReceiptBody()))
    assert hub.store.message(sent.message.id).status == "delivered"  # type: ignore[union-attr]


async def test_quiet_conversations_end_and_ask_for_a_rating(tmp_path: Path) -> None:
    with Store(tmp_path / "hub.db") as store:
        async with Hub(
            store,
            hub_id="home",
            directory=[SHOP],
            link_factory=lambda _: FakeLink(),
            identity=HUB_ID,
            idle_close_ms=200,
        ) as hub:
            await hub.opt_in("shop")
            sent = await hub.send("Bonjour", brand_id="shop")
            for _ in range(40):
                await asyncio.sleep(0.05)
                if hub.store.conversation(sent.message.conversation_id)["state"] == "closed":
                    break
            conversation = hub.store.conversation(sent.message.conversation_id)
            assert (conversation["state"], conversation["closed_by"]) == ("closed", "inactivity")
            assert notes(hub, sent.message.conversation_id) == ["rating_prompt"]


# --- consent, minimum disclosure, ledger, erase, quiet by default -----------------------------

SHOP_SCOPED = SHOP.model_copy(
    update={
        "scopes": [
            ScopeRequest(scope="email", purpose=LocalizedText(fr="vous écrire", en="write to you")),
            ScopeRequest(scope="phone", purpose=LocalizedText(fr="vous appeler", en="call you")),
        ]
    }
)


@pytest.fixture
async def scoped_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    with Store(tmp_path / "hub.db") as store:
        link = FakeLink()
        async with Hub(
            store, hub_id="home", directory=[SHOP_SCOPED], link_factory=lambda _: link, identity=HUB_ID
        ) as h:
            await h.opt_in("shop", grant=["email"], deny=["phone"])
            await online(h)
            yield h


async def test_only_granted_data_leaves_home_and_every_disclosure_is_in_the_ledger(scoped_hub: Hub) -> None:
    hub = scoped_hub
    text = (
        "Écrivez-moi à lea.martin@example.fr ou appelez le 06 12 34 56 78,"
        " IBAN FR76 3000 6000 0112 3456 7890 189"
    )
    sent = await hub.send(text, brand_id="shop")
    await settle()
    [message] = fake(hub).opened("message")
    assert isinstance(message.body, MessageBody)
    assert "lea.martin@example.fr" in message.body.text
    assert "06 12 34 56 78" not in message.body.text
    assert "FR76" not in message.body.text
    assert {m["kind"] for m in sent.masked} == {"phone", "iban"}
    assert hub.store.message(sent.message.id).text == text  # type: ignore[union-attr]  # kept whole at home
    [entry] = hub.ledger.entries("shop")
    assert (entry.scope, entry.value, entry.envelope_id) == (
        "email",
        "lea.martin@example.fr",
        sent.message.id,
    )
    assert entry.basis == hub.consents.basis("shop", "household", "email")
    assert hub.ledger.verify().ok
    [receipt] = hub.consents.receipts("shop")
    assert verify_receipt(receipt.record, receipt.sig, HUB_ID.public())


async def test_erasing_a_brand_leaves_only_the_receipt_and_asks_until_it_forgets(scoped_hub: Hub) -> None:
    hub = scoped_hub
    sent = await hub.send("Mon e-mail : lea.martin@example.fr", brand_id="shop")
    await from_brand(hub, reply_to(sent.message.conversation_id))
    await hub.close(sent.message.conversation_id)
    await hub.rate(sent.message.conversation_id, rating_bot=5)
    status = await hub.erase("shop")
    assert status["request"] is not None
    assert status["forgotten_at"] is None
    dump = "\n".join(hub.store.conn.iterdump())
    assert "lea.martin@example.fr" not in dump
    assert hub.store.conversations() == []
    assert hub.consents.granted("shop", "household") == frozenset()  # its grants are revoked too
    assert hub.ledger.verify().ok
    await settle()
    [forget] = fake(hub).opened("forget")
    await from_brand(hub, Envelope(type="receipt", sender="shop", ref=forget.id, body=ReceiptBody()))
    assert hub.store.outbox.pending("shop") == 1  # a receipt is not "forgotten": keep asking
    done = Envelope(
        type="forgotten", sender="shop", recipient="home", ref=forget.id, body=ForgottenBody(erased=3)
    )
    await from_brand(hub, done)
    assert hub.forget_status("shop")["forgotten_at"] is not None
    assert hub.store.outbox.pending("shop") == 0
    export = hub.export()
    assert export["messages"] == []
    assert export["ledger_verification"]["ok"] is True


async def test_marketing_is_blocked_by_default_and_counted(scoped_hub: Hub) -> None:
    hub = scoped_hub
    promo = Envelope(
        type="notification", sender="shop", body=NotificationBody(text="-20 % !", category="marketing")
    )
    await from_brand(hub, promo)
    assert hub.store.notifications() == []
    assert hub.policy.counts("shop")["marketing"]["block"] == 1
    hub.policy.allow("shop", "marketing")
    hub.policy.set_quiet_hours("household", None)
    await from_brand(
        hub,
        Envelope(
            type="notification", sender="shop", body=NotificationBody(text="-30 % !", category="marketing")
        ),
    )
    assert [n.text for n in hub.store.notifications()] == ["-30 % !"]


async def test_a_brand_asks_for_a_datum_and_the_member_decides(scoped_hub: Hub) -> None:
    hub = scoped_hub
    sent = await hub.send("Je veux retourner ma commande", brand_id="shop")
    conversation = sent.message.conversation_id
    ask = Envelope(
        type="data_request",
        sender="shop",
        recipient="home",
        conversation=conversation,
        body=DataRequestBody(scope="phone", purpose="pour que le transporteur vous appelle"),
    )
    await from_brand(hub, ask)
    note = hub.store.messages(conversation)[-1]
    assert note.extra["kind"] == "data_request"
    assert note.text == (
        "Boutique Test demande votre numéro de téléphone :"
        " « pour que le transporteur vous appelle ». Le partager ?"
    )
    assert "phone" not in hub.consents.granted("shop", "household")
    await hub.answer_data_request(ask.id, "once", "06 12 34 56 78")
    await settle()
    [response] = fake(hub).opened("data_response")
    assert response.ref == ask.id
    assert response.body == DataResponseBody(scope="phone", granted=True, value="06 12 34 56 78")
    assert "phone" not in hub.consents.granted("shop", "household")  # once is not always
    [entry] = [e for e in hub.ledger.entries("shop") if e.scope == "phone"]
    assert (entry.value, entry.basis) == ("06 12 34 56 78", "once")
    with pytest.raises(InvalidConsent, match="already answered"):
        await hub.answer_data_request(ask.id, "no", None)
    second = ask.model_copy(update={"id": new_id()})
    await from_brand(hub, second)
    await hub.answer_data_request(second.id, "no", None)
    await settle()
    assert fake(hub).opened("data_response")[-1].body == DataResponseBody(scope="phone", granted=False)


async def test_ideas_comments_and_handoff_excerpts_pass_the_gate_too(scoped_hub: Hub) -> None:
    hub = scoped_hub
    await hub.send_idea("shop", "Rappelez-moi au 06 12 34 56 78 pour en parler")
    asked = await hub.send("Un conseiller svp, écrivez à lea.martin@example.fr", brand_id="shop")
    await settle()
    [idea] = fake(hub).opened("idea")
    assert "06 12 34 56 78" not in idea.body.text  # type: ignore[union-attr]
    [handoff] = fake(hub).opened("handoff")
    assert "lea.martin@example.fr" in handoff.body.transcript[-1].text  # type: ignore[union-attr]  # granted
    assert [e.envelope_id for e in hub.ledger.entries("shop")] == [asked.message.id]  # and recorded


async def test_nothing_more_is_queued_for_a_brand_after_opt_out(scoped_hub: Hub) -> None:
    hub = scoped_hub
    sent = await hub.send("Bonjour", brand_id="shop")
    await hub.opt_out("shop")
    with pytest.raises(NotOptedIn):
        await hub.request_callback(sent.message.conversation_id)
    assert hub.store.outbox.pending("shop") == 0
