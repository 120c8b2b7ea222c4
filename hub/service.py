"""The hub's core: accept a member's message, route it, keep it, deliver it, bring answers back.

Delivery contract (see ``docs/protocol.md``): a message is written to SQLite
with its outbox entry in one transaction *before* the HTTP call returns; the
outbox publishes it while the brand is online and until the brand's receipt
arrives; envelopes from brands are stored by id (duplicates are recognised)
before the hub sends its own receipt. A killed hub loses nothing it accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from hub.consent import HOUSEHOLD, Consents
from hub.consent import State as ConsentState
from hub.crypto import BadSignature, ExpiredEnvelope, Header, Identity, PublicKeys, UnknownKey
from hub.errors import (
    BrokerError,
    FoyerError,
    InvalidConsent,
    InvalidEnvelope,
    ManifestError,
    NoPendingKeys,
    NotOptedIn,
    ProtocolError,
    UnknownBrand,
    UnknownConversation,
    UnknownMessageType,
)
from hub.i18n import say, scope_label
from hub.intent import Turn, conversation_going_badly, wants_human
from hub.ledger import Ledger
from hub.mqtt import MqttLink
from hub.outbox import OutboxItem, pump
from hub.policy import NotificationPolicy
from hub.privacy import GateResult, gate
from hub.protocol import (
    Contact,
    DataRequestBody,
    DataResponseBody,
    Envelope,
    ErrorBody,
    FeedbackBody,
    ForgetBody,
    HandoffBody,
    IdeaBody,
    Manifest,
    MessageBody,
    NotificationBody,
    PresenceBody,
    ReceiptBody,
    ReplyBody,
    Topics,
    TranscriptLine,
    decode,
    encode,
    new_id,
    now_ms,
    validate,
)
from hub.router import Lang, Router, detect_lang
from hub.store import BrandRow, MessageRow, Store
from hub.wire import Wire

__all__ = ["Hub", "Link", "SendResult"]

log = logging.getLogger(__name__)

OUT_PENDING = ("accepted", "queued")


class Link(Protocol):
    """The seam between the hub and MQTT (a real :class:`MqttLink`, or a fake in unit tests)."""

    @property
    def connected(self) -> bool: ...
    async def subscribe(self, topic: str) -> None: ...
    async def unsubscribe(self, topic: str) -> None: ...
    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None: ...


LinkFactory = Callable[["Hub"], Link]


@dataclass(frozen=True)
class SendResult:
    message: MessageRow
    brand: BrandRow
    notice: str | None
    masked: list[dict[str, str]] = field(default_factory=list)


class Hub:
    """One household's hub; ``async with Hub(store, …)`` connects it and starts its outbox."""

    def __init__(
        self,
        store: Store,
        *,
        hub_id: str,
        directory: list[Manifest],
        link_factory: LinkFactory,
        identity: Identity,
        idle_close_ms: int = 30 * 60 * 1000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.hub_id = hub_id
        self.wire = Wire(identity)
        self.idle_close_ms = idle_close_ms
        self.consents = Consents(store.conn, identity, hub_id)
        self.ledger = Ledger(store.conn)
        self.policy = NotificationPolicy(store.conn, clock=clock)
        self._unverified_status: dict[str, bytes] = {}
        for manifest in directory:
            store.upsert_manifest(manifest)
        self.router = Router(b.manifest for b in store.brands())
        self.refused: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.started_at = time.monotonic()
        self._link_factory = link_factory
        self._link: Link | None = None
        self._wake = asyncio.Event()
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def link(self) -> Link:
        if self._link is None:
            raise RuntimeError("the hub is not started; use 'async with hub:'")
        return self._link

    async def __aenter__(self) -> Self:
        self._link = self._link_factory(self)
        await self._link.subscribe(Topics.ALL_MANIFESTS)
        for brand in self.store.brands():
            if brand.opted_in or self._forgetting(brand.id):
                await self._follow(brand.id)
            self.store.set_online(brand.id, False)  # until its retained status says otherwise
        if isinstance(self._link, MqttLink):
            await self._link.__aenter__()
        self._pump = asyncio.create_task(self._pump_outbox(), name="hub-outbox")
        self._closer = asyncio.create_task(self._close_idle(), name="hub-idle-closer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in (self._pump, self._closer, *self._tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if isinstance(self._link, MqttLink):
            await self._link.__aexit__(exc_type, exc, tb)

    async def _close_idle(self) -> None:
        """Housekeeping: end quiet conversations (asking for a rating); release held notifications."""
        while True:
            await asyncio.sleep(min(30.0, self.idle_close_ms / 4000))
            try:
                for conversation_id in self.store.idle_conversations(self.idle_close_ms):
                    await self.close(conversation_id, by="inactivity")
                self.release_held()
            except Exception:  # never let housekeeping die; try again next round
                log.exception("housekeeping failed")

    def release_held(self) -> int:
        """Deliver the notifications whose quiet hours are over; expired ones are marked so."""
        released = 0
        with self.store.transaction():
            for held in self.policy.due_held():
                if held.ref is not None:
                    self._emit_message(self.store.set_status(held.ref, "received", only_from=("held",)))
                    released += 1
            still = {h.ref for h in self.policy.held()}
            for row in self.store.notifications():
                if row.status == "held" and row.id not in still:
                    self._emit_message(self.store.set_status(row.id, "expired", only_from=("held",)))
        return released

    async def on_connect(self) -> None:
        """Called by the link after each (re)connection: flush what waited."""
        self._wake.set()

    async def _follow(self, brand_id: str) -> None:
        try:
            await self.link.subscribe(Topics.to_hub(self.hub_id, brand_id))
            await self.link.subscribe(Topics.status(brand_id))
        except BrokerError as err:  # the link re-subscribes everything when it reconnects
            log.warning("subscribe to %s deferred to the next connection: %s", brand_id, err)

    async def _unfollow(self, brand_id: str) -> None:
        try:
            await self.link.unsubscribe(Topics.to_hub(self.hub_id, brand_id))
            await self.link.unsubscribe(Topics.status(brand_id))
        except BrokerError as err:  # the link unsubscribes when it reconnects
            log.warning("unsubscribe from %s deferred to the next connection: %s", brand_id, err)

    # --- events for household clients -----------------------------------------------------

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        for queue in list(self._listeners):
            try:
                queue.put_nowait({"event": event, "data": data})
            except asyncio.QueueFull:
                # Never block the hub for a stuck client: empty its queue and tell it to
                # reconnect with ?since= (the API closes the socket on this event).
                self._listeners.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait({"event": "overflow", "data": {}})

    def _emit_message(self, row: MessageRow | None) -> None:
        if row is not None:
            self._emit("message", row.as_dict())

    # --- brands and opt-in -----------------------------------------------------------------

    def brand(self, brand_id: str) -> BrandRow:
        brand = self.store.brand(brand_id)
        if brand is None:
            known = ", ".join(b.id for b in self.store.brands())
            raise UnknownBrand(f"brand {brand_id!r} is not in the directory; known: {known}")
        return brand

    def opted_in(self) -> set[str]:
        return self.store.brand_ids(opted_in=True)

    MAX_DIRECTORY = 500  # brands learned from the network; beyond, manifests are refused

    async def opt_in(
        self,
        brand_id: str,
        *,
        grant: Iterable[str] = (),
        deny: Iterable[str] = (),
        member: str = HOUSEHOLD,
    ) -> BrandRow:
        """Open the door to a brand; the scopes granted and refused get a signed consent receipt."""
        brand = self.brand(brand_id)
        states: dict[str, ConsentState] = {**dict.fromkeys(deny, "denied"), **dict.fromkeys(grant, "granted")}
        with self.store.transaction():
            if states:
                try:
                    self.consents.change(brand.manifest, member, states)
                except ValueError as err:
                    raise InvalidConsent(str(err)) from err
            self.store.set_opt_in(brand_id, True)
        self._check_keys(brand_id)
        await self._follow(brand_id)
        self._emit("brand", self._brand_event(brand_id))
        return self.brand(brand_id)

    def set_consents(
        self, brand_id: str, states: dict[str, ConsentState], member: str = HOUSEHOLD
    ) -> dict[str, Any]:
        """Grant, deny or revoke scopes for a brand; returns the signed consent receipt."""
        brand = self.brand(brand_id)
        try:
            receipt = self.consents.change(brand.manifest, member, states)
        except ValueError as err:
            raise InvalidConsent(str(err)) from err
        return {"record": receipt.record, "sig": receipt.sig}

    async def erase(self, brand_id: str) -> dict[str, Any]:
        """Forget a brand: delete what the hub holds of it and ask it to forget the household.

        The ``forget`` request goes through the outbox and is re-sent until the brand answers
        ``forgotten`` (across restarts); the ledger keeps that it happened, not the values.
        """
        brand = self.brand(brand_id)
        with self.store.transaction():
            erased = self.store.erase_brand(brand_id)
            for key, raw in self.store.meta_items("data_request:"):  # pending questions go too
                if json.loads(raw).get("brand") == brand_id:
                    self.store.delete_meta(key)
            self.store.set_opt_in(brand_id, False)
            erased += self.ledger.erase_brand(brand_id)
            self._revoke_all(brand)
            self.policy.forget_brand(brand_id)
            forget = Envelope(
                type="forget",
                sender=self.hub_id,
                recipient=brand_id,
                body=ForgetBody(reason="the household erased this brand"),
            )
            self.store.outbox.add(forget.id, brand_id, Topics.to_brand(brand_id, self.hub_id), encode(forget))
            # A brand whose keys were never pinned never received anything: nothing to forget.
            forgotten_at = None if brand.pinned else now_ms()
            if brand.pinned is None:
                self.store.outbox.ack(forget.id, brand_id)
            self.store.set_meta(
                f"forget:{brand_id}",
                json.dumps(
                    {
                        "request": forget.id,
                        "asked_at": now_ms(),
                        "erased": erased,
                        "forgotten_at": forgotten_at,
                    }
                ),
            )
        self.ledger.purge_files()
        self._wake.set()
        await self._follow(brand_id)  # until it answers "forgotten"
        self._emit("brand", self._brand_event(brand_id))
        return self.forget_status(brand.id)

    def export(self) -> dict[str, Any]:
        """Everything the hub holds for the household, as one JSON document (docs/export.md)."""
        brands = {b.id: b for b in self.store.brands()}
        return {
            "format": "foyer-export/1",
            "exported_at": now_ms(),
            "hub": {"id": self.hub_id, "keys": self.wire.public.as_dict()},
            "brands": [
                {
                    "id": b.id,
                    "name": b.manifest.name,
                    "opted_in": b.opted_in,
                    "opted_at": b.opted_at,
                    "keys": b.pinned.as_dict() if b.pinned else None,
                    "forget": self.forget_status(b.id),
                }
                for b in brands.values()
            ],
            **self.store.export(),
            "consents": [
                {
                    "brand": b,
                    "states": [dataclasses.asdict(x) for x in self.consents.states(b)],
                    "receipts": [{"record": r.record, "sig": r.sig} for r in self.consents.receipts(b)],
                }
                for b in brands
            ],
            "ledger": [dataclasses.asdict(e) for e in self.ledger.entries()],
            "ledger_verification": dataclasses.asdict(self.ledger.verify()),
        }

    def _forgetting(self, brand_id: str) -> bool:
        """A forget request was sent and the brand has not answered yet."""
        status = self.forget_status(brand_id)
        return bool(status.get("request")) and not status.get("forgotten_at")

    def _revoke_all(self, brand: BrandRow) -> None:
        """Every scope granted to the brand, by anyone, is revoked (one signed receipt per member)."""
        granted: dict[str, list[str]] = {}
        for state in self.consents.states(brand.id):
            if state.state == "granted":
                granted.setdefault(state.member, []).append(state.scope)
        for member, scopes in granted.items():
            self.consents.revoke(brand.manifest, member, scopes)

    def forget_status(self, brand_id: str) -> dict[str, Any]:
        raw = self.store.meta(f"forget:{brand_id}")
        return {"brand": brand_id, **json.loads(raw)} if raw else {"brand": brand_id, "request": None}

    def _on_forgotten(self, brand: BrandRow, envelope: Envelope) -> None:
        status = self.forget_status(brand.id)
        if envelope.ref is None or envelope.ref != status.get("request"):
            raise InvalidEnvelope(f"forgotten refers to {envelope.ref!r}, not our forget request")
        with self.store.transaction():
            self.store.outbox.ack(envelope.ref, brand.id)
            status["forgotten_at"] = now_ms()
            self.store.set_meta(
                f"forget:{brand.id}", json.dumps({k: v for k, v in status.items() if k != "brand"})
            )
        self._emit("brand", self._brand_event(brand.id))

    async def opt_out(self, brand_id: str) -> BrandRow:
        self.brand(brand_id)
        with self.store.transaction():
            self.store.set_opt_in(brand_id, False)
            self.store.set_online(brand_id, False)
            self.store.outbox.drop_peer(brand_id)
            cancelled = self.store.cancel_pending(brand_id)
        for row in cancelled:
            self._emit_message(row)
        await self._unfollow(brand_id)
        self._emit("brand", self._brand_event(brand_id))
        return self.brand(brand_id)

    def _brand_event(self, brand_id: str) -> dict[str, Any]:
        brand = self.brand(brand_id)
        return {"id": brand.id, "opted_in": brand.opted_in, "online": brand.online}

    # --- household → brand -----------------------------------------------------------------

    async def send(
        self,
        text: str,
        *,
        brand_id: str | None = None,
        conversation_id: str | None = None,
        lang: Lang | None = None,
    ) -> SendResult:
        """Accept a member's message: route, persist with its outbox entry, then deliver.

        "Je veux parler à un conseiller" (in any phrasing) becomes a handoff request
        instead of a message for the bot.
        """
        lang = lang or detect_lang(text)
        brand, conversation_id = self._route(text, brand_id, conversation_id, lang)
        state = self.store.conversation_state(conversation_id)
        if wants_human(text) and state not in ("human", "waiting_human"):
            return await self.request_human(
                conversation_id, origin="member", text=text, lang=lang, brand_id=brand.id
            )
        gated = self._gate(brand, text, lang)
        result = self._queue_out(
            brand, conversation_id, MessageBody(text=gated.text, lang=lang), text, lang, gated=gated
        )
        self._maybe_offer_human(brand, conversation_id, lang)
        return result

    def _gate(self, brand: BrandRow, text: str, lang: str, member: str = HOUSEHOLD) -> GateResult:
        """The one privacy gate everything leaving the home passes: mask what was not granted."""
        return gate(text, self.consents.granted(brand.id, member), lang)

    def _route(
        self, text: str, brand_id: str | None, conversation_id: str | None, lang: Lang
    ) -> tuple[BrandRow, str]:
        if conversation_id is not None:
            owner = self.store.conversation_brand(conversation_id)
            if brand_id is not None and brand_id != owner:
                raise UnknownConversation(
                    f"conversation {conversation_id!r} is with {owner!r}, not {brand_id!r}"
                )
            brand_id = owner
        elif brand_id is None:
            brand_id = self.router.route(text, self.opted_in(), lang)
        brand = self.brand(brand_id)
        if not brand.opted_in:
            raise NotOptedIn(
                f"brand {brand_id!r} is not opted in: the household must opt in before writing to it"
            )
        return brand, conversation_id or new_id()

    def _queue_out(
        self,
        brand: BrandRow,
        conversation_id: str,
        body: MessageBody | HandoffBody | FeedbackBody | IdeaBody | DataResponseBody,
        text: str,
        lang: str,
        *,
        kind: str = "chat",
        gated: GateResult | None = None,
        member: str = HOUSEHOLD,
        ref: str | None = None,
    ) -> SendResult:
        """Store an outgoing envelope with its outbox entry in one transaction, then wake the outbox.

        With ``gated``, what the gate masked is kept with the message (the member sees it)
        and every datum it let through is written to the ledger in the same transaction.
        """
        if not self.brand(brand.id).opted_in:
            raise NotOptedIn(f"brand {brand.id!r} is not opted in: nothing more goes to it")
        type_ = _TYPE_OF[type(body)]
        envelope = Envelope(
            type=type_,
            sender=self.hub_id,
            recipient=brand.id,
            conversation=conversation_id,
            ref=ref,
            body=body,
        )
        payload = encode(envelope)  # kept in clear on the home's disk; sealed when published
        status = "accepted" if brand.online else "queued"
        with self.store.transaction():  # joins the caller's transaction if there is one
            self.store.create_conversation(brand.id, kind=kind, conversation_id=conversation_id)
            row = self.store.add_message(
                message_id=envelope.id,
                conversation_id=conversation_id,
                brand_id=brand.id,
                direction="out",
                type_=type_,
                text=text,
                lang=lang,
                author_kind="member",
                author_name="",
                status=status,
                extra=_gate_extra(gated),
            )
            self.store.outbox.add(envelope.id, brand.id, Topics.to_brand(brand.id, self.hub_id), payload)
            if gated is not None and gated.disclosed:
                basis = {f.scope: self.consents.basis(brand.id, member, f.scope) for f in gated.disclosed}
                self.ledger.append_findings(
                    brand.id, member, text, gated.disclosed, basis=basis, envelope_id=envelope.id
                )
        if row is None:  # a fresh UUIDv7 cannot collide; refuse loudly rather than lose it
            raise InvalidEnvelope(f"message id {envelope.id} already exists")
        self.stats["accepted"] += 1
        self._emit_message(row)
        self._wake.set()
        notice = None if brand.online else say("brand_offline", lang, brand=brand.manifest.name)
        return SendResult(
            message=row,
            brand=brand,
            notice=notice,
            masked=[{"kind": f.kind, "scope": f.scope} for f in (gated.masked if gated else [])],
        )

    def _hub_note(
        self,
        brand: BrandRow,
        conversation_id: str,
        key: str,
        lang: str,
        extra: dict[str, Any] | None = None,
        **values: str,
    ) -> MessageRow | None:
        """A line the hub itself adds to a conversation (offers, handoff news, the rating question)."""
        text = say(key, lang, brand=brand.manifest.name, **values)
        row = self.store.add_message(
            message_id=new_id(),
            conversation_id=conversation_id,
            brand_id=brand.id,
            direction="hub",
            type_="notice",
            text=text,
            lang=lang,
            author_kind="hub",
            author_name="Foyer",
            status="shown",
            extra={"kind": key, **(extra or {})},
        )
        self._emit_message(row)
        return row

    # --- humans in the loop ----------------------------------------------------------------

    def _history(self, conversation_id: str) -> list[Turn]:
        turns = []
        for row in self.store.recent_messages(conversation_id, 12):
            if row.direction == "out" and row.type in ("message", "handoff"):
                turns.append(Turn("member", row.text))
            elif row.direction == "in" and row.type == "reply":
                turns.append(Turn("bot", row.text))
        return turns

    def _maybe_offer_human(self, brand: BrandRow, conversation_id: str, lang: str) -> None:
        conversation = self.store.conversation(conversation_id)
        if conversation["state"] != "bot":
            return
        signal = conversation_going_badly(self._history(conversation_id))
        recent = self.store.recent_messages(conversation_id, 6)
        already = any(r.extra.get("kind") == "offer_human" for r in recent)
        if signal is not None and not already:
            self._hub_note(brand, conversation_id, "offer_human", lang, {"signal": signal.kind})

    async def request_human(
        self,
        conversation_id: str,
        *,
        origin: Literal["member", "hub"] = "member",
        text: str | None = None,
        lang: Lang | None = None,
        brand_id: str | None = None,
    ) -> SendResult:
        """Ask the brand for a person, with the reason, the language and a transcript excerpt."""
        lang = lang or "fr"
        if brand_id is None:
            brand_id = self.store.conversation_brand(conversation_id)
        brand = self.brand(brand_id)
        self.store.create_conversation(brand.id, conversation_id=conversation_id)
        granted = self.consents.granted(brand.id, HOUSEHOLD)
        lines = [
            ("member" if t.role == "member" else "bot", t.text) for t in self._history(conversation_id)[-10:]
        ]
        if text:
            lines.append(("member", text))
        gated = [(role, said, gate(said, granted, lang)) for role, said in lines[-20:]]
        transcript = [TranscriptLine(role=role, text=result.text) for role, _, result in gated]
        body = HandoffBody(
            action="request",
            origin=origin,
            lang=lang,
            transcript=transcript,
            reason="the member asked for a person"
            if origin == "member"
            else "the member accepted the hub's offer of a person",
        )
        with self.store.transaction():  # the excerpt leaves home: its disclosures go to the ledger
            result = self._queue_out(
                brand,
                conversation_id,
                body,
                text or say("human_requested", lang, brand=brand.manifest.name),
                lang,
            )
            for _, said, gate_result in gated:
                if gate_result.disclosed:
                    basis = {
                        f.scope: self.consents.basis(brand.id, HOUSEHOLD, f.scope)
                        for f in gate_result.disclosed
                    }
                    self.ledger.append_findings(
                        brand.id,
                        HOUSEHOLD,
                        said,
                        gate_result.disclosed,
                        basis=basis,
                        envelope_id=result.message.id,
                    )
        self.store.update_conversation(conversation_id, state="waiting_human", human_requested_at=now_ms())
        self.stats["human_requests"] += 1
        return result

    async def request_callback(self, conversation_id: str, lang: Lang = "fr") -> SendResult:
        brand = self.brand(self.store.conversation_brand(conversation_id))
        body = HandoffBody(
            action="callback",
            origin="member",
            lang=lang,
            reason="no one was available: the member asks to be called back",
        )
        result = self._queue_out(
            brand, conversation_id, body, say("callback_recorded", lang, brand=brand.manifest.name), lang
        )
        self.stats["callbacks"] += 1
        return result

    async def close(self, conversation_id: str, *, by: str = "member", lang: Lang = "fr") -> None:
        """End a conversation and ask the member for a rating (once)."""
        conversation = self.store.conversation(conversation_id)
        if conversation["state"] == "closed":
            return
        brand = self.brand(conversation["brand_id"])
        if by == "member" and conversation["state"] in ("human", "waiting_human"):
            self._queue_out(
                brand,
                conversation_id,
                HandoffBody(action="ended", outcome="closed", lang=lang),
                say("closed", lang, brand=brand.manifest.name),
                lang,
            )
        self.store.update_conversation(conversation_id, state="closed", closed_at=now_ms(), closed_by=by)
        parts = (
            ["bot", "human"]
            if conversation["had_human"] and conversation["had_bot"]
            else (["human"] if conversation["had_human"] else ["bot"])
        )
        self._hub_note(
            brand,
            conversation_id,
            "rating_prompt",
            lang,
            {"parts": parts},
            parts=say("rating_parts", lang) if len(parts) == 2 else "",
        )

    async def rate(
        self,
        conversation_id: str,
        *,
        rating_bot: int | None = None,
        rating_human: int | None = None,
        comment: str | None = None,
        lang: Lang = "fr",
    ) -> dict[str, Any]:
        """Keep the member's rating at home; send it to the brand only if the household allowed it."""
        brand = self.brand(self.store.conversation_brand(conversation_id))
        feedback = FeedbackBody(rating_bot=rating_bot, rating_human=rating_human, comment=comment)
        share = brand.share_satisfaction and brand.opted_in
        self.store.add_rating(
            conversation_id,
            brand.id,
            rating_bot=rating_bot,
            rating_human=rating_human,
            comment=comment,
            shared=share,
        )
        if share:
            gated = self._gate(brand, comment, lang) if comment else None
            if gated is not None:
                feedback = feedback.model_copy(update={"comment": gated.text})
            self._queue_out(brand, conversation_id, feedback, comment or "", lang, gated=gated)
        shared = say("rating_shared", lang, brand=brand.manifest.name) if share else ""
        self._hub_note(brand, conversation_id, "thanks_rating", lang, shared=shared)
        rating = self.store.rating(conversation_id)
        return rating or {}

    async def send_idea(self, brand_id: str, text: str, lang: Lang | None = None) -> SendResult:
        """Co-construction: an idea for the brand, in a conversation of its own."""
        lang = lang or detect_lang(text)
        brand, conversation_id = self._route(text, brand_id, None, lang)
        gated = self._gate(brand, text, lang)
        idea = IdeaBody(text=gated.text, lang=lang)
        return self._queue_out(brand, conversation_id, idea, text, lang, kind="idea", gated=gated)

    def _on_handoff(self, brand: BrandRow, envelope: Envelope, handoff: HandoffBody) -> None:
        """What the brand says about a person taking over; told to the member in their language."""
        conversation_id = envelope.conversation
        if conversation_id is None or self.store.conversation_brand(conversation_id) != brand.id:
            raise UnknownConversation(f"conversation {conversation_id!r} is not with brand {brand.id!r}")
        lang = handoff.lang
        now = now_ms()
        if handoff.action == "accepted" and handoff.agent:
            self.store.update_conversation(conversation_id, state="human", human_joined_at=now, had_human=1)
            self._hub_note(
                brand, conversation_id, "human_joined", lang, {"agent": handoff.agent}, agent=handoff.agent
            )
        elif handoff.action == "accepted":
            conversation = self.store.conversation(conversation_id)
            if conversation["human_requested_at"] is None:  # the bot decided to hand over
                self.store.update_conversation(conversation_id, human_requested_at=now)
            self.store.update_conversation(conversation_id, state="waiting_human")
            minutes = str(max(1, round((handoff.wait_s or 0) / 60)))
            self._hub_note(
                brand,
                conversation_id,
                "human_queued",
                lang,
                {"position": handoff.queue_position, "wait_s": handoff.wait_s},
                position=str(handoff.queue_position or 1),
                minutes=minutes,
            )
        elif handoff.action == "unavailable":
            self.store.update_conversation(conversation_id, state="bot")
            when = say("human_when", lang, next=handoff.next_available) if handoff.next_available else ""
            channels = ", ".join(_contact(c, lang) for c in brand.manifest.contact)
            self._hub_note(
                brand,
                conversation_id,
                "human_unavailable",
                lang,
                {"next_available": handoff.next_available, "callback": True},
                when=when,
                channels=say("human_channels", lang, channels=channels) if channels else "",
            )
        elif handoff.action == "ended" and handoff.outcome == "back_to_bot":
            self.store.update_conversation(conversation_id, state="bot")
            self._hub_note(brand, conversation_id, "back_to_bot", lang)
        elif handoff.action == "ended":
            self._background(self.close(conversation_id, by="brand", lang=lang))
        else:
            raise InvalidEnvelope(f"a brand may not send a handoff {handoff.action!r}")

    def _on_data_request(self, brand: BrandRow, envelope: Envelope, asked: DataRequestBody) -> None:
        """The brand needs a datum: ask the member (once / always / no), never answer for them."""
        conversation_id = envelope.conversation
        if conversation_id is None or self.store.conversation_brand(conversation_id) != brand.id:
            raise UnknownConversation(f"conversation {conversation_id!r} is not with brand {brand.id!r}")
        self.store.set_meta(
            f"data_request:{envelope.id}",
            json.dumps(
                {"brand": brand.id, "conversation": conversation_id, "scope": asked.scope, "answered": None}
            ),
        )
        self._hub_note(
            brand,
            conversation_id,
            "data_request",
            asked.lang,
            {"request": envelope.id, "scope": asked.scope, "purpose": asked.purpose},
            scope=scope_label(asked.scope, asked.lang),
            purpose=asked.purpose,
        )

    async def answer_data_request(
        self,
        request_id: str,
        answer: Literal["once", "always", "no"],
        value: str | None,
        *,
        member: str = HOUSEHOLD,
        lang: Lang = "fr",
    ) -> SendResult:
        """The member's answer: "always" also grants the scope (signed receipt); each datum shared
        is written to the ledger; the brand gets a ``data_response`` either way."""
        raw = self.store.meta(f"data_request:{request_id}")
        if raw is None:
            raise UnknownConversation(f"no data request {request_id!r} on this hub")
        request = json.loads(raw)
        if request["answered"]:
            raise InvalidConsent(f"data request {request_id!r} was already answered ({request['answered']})")
        brand = self.brand(request["brand"])
        scope = request["scope"]
        if answer != "no" and not (value and value.strip()):
            raise InvalidConsent(f"answering {answer!r} needs the value of {scope!r} to share")
        with self.store.transaction():
            try:
                outcome = self.consents.remember_answer(brand.manifest, member, scope, answer)
            except ValueError as err:
                raise InvalidConsent(str(err)) from err
            shared = value.strip() if outcome.disclose and value else None
            body = DataResponseBody(scope=scope, granted=shared is not None, value=shared)
            label = scope_label(scope, lang)
            text = (
                say("data_shared", lang, brand=brand.manifest.name, scope=label, how=say(answer, lang))
                if shared
                else say("data_refused", lang, brand=brand.manifest.name, scope=label)
            )
            result = self._queue_out(brand, request["conversation"], body, text, lang, ref=request_id)
            if shared is not None:
                self.ledger.append(
                    brand.id,
                    member,
                    scope,
                    shared,
                    basis=outcome.basis or "once",
                    envelope_id=result.message.id,
                )
            request["answered"] = answer
            self.store.set_meta(f"data_request:{request_id}", json.dumps(request))
        return result

    def service_stats(self) -> list[dict[str, Any]]:
        """Per brand: first response, time to a human, duration, satisfaction, share needing a human."""
        by_brand: dict[str, list[dict[str, Any]]] = {}
        for row in self.store.stats():
            by_brand.setdefault(row["brand_id"], []).append(row)
        out = []
        for brand_id, rows in sorted(by_brand.items()):
            firsts = [r["first_reply_at"] - r["created_at"] for r in rows if r["first_reply_at"]]
            to_human = [
                r["human_joined_at"] - r["human_requested_at"]
                for r in rows
                if r["human_joined_at"] and r["human_requested_at"]
            ]
            durations = [r["closed_at"] - r["created_at"] for r in rows if r["closed_at"]]
            ratings = [v for r in rows for v in (r["rating_bot"], r["rating_human"]) if v is not None]
            brand = self.store.brand(brand_id)
            out.append(
                {
                    "brand": brand_id,
                    "name": brand.manifest.name if brand else brand_id,
                    "conversations": len(rows),
                    "first_response_ms": _median(firsts),
                    "time_to_human_ms": _median(to_human),
                    "duration_ms": _median(durations),
                    "satisfaction": round(sum(ratings) / len(ratings), 2) if ratings else None,
                    "ratings": len(ratings),
                    "needed_human": round(sum(1 for r in rows if r["had_human"]) / len(rows), 3),
                }
            )
        return out

    async def _pump_outbox(self) -> None:
        await pump(
            self.store.outbox,
            self.link,
            self._wake,
            peers=self._reachable,
            published=self._published,
            prepare=self._seal,
        )

    def _reachable(self) -> set[str]:
        return {
            b
            for b in self.store.brand_ids(online=True)
            if self.brand(b).pinned is not None and (self.brand(b).opted_in or self._forgetting(b))
        }

    def _seal(self, item: OutboxItem) -> bytes:
        return self._wire_bytes(decode(item.payload))

    def _wire_bytes(self, envelope: Envelope) -> bytes:
        """Seal and sign for the brand; the hub's keys travel along so the brand can pin them."""
        brand = self.store.brand(envelope.recipient or "")
        return self.wire.encode(envelope, brand.pinned if brand else None, with_keys=True)

    def _published(self, item: OutboxItem) -> None:
        self.stats["published"] += 1
        self._emit_message(self.store.set_status(item.id, "sent", only_from=OUT_PENDING))

    # --- brand → household -----------------------------------------------------------------

    async def on_mqtt(self, topic: str, payload: bytes, retain: bool) -> None:
        """Every MQTT message the hub receives comes through here; bad input never escapes."""
        try:
            channel, owner, sender = Topics.parse(topic)
        except ValueError as err:
            self._refuse("bad_topic", str(err))
            return
        if channel == "status":
            self._on_status(owner, payload)
        elif channel == "manifest":
            self._on_manifest(owner, payload)
        elif channel == "to_hub" and owner == self.hub_id:
            await self._on_envelope(sender, payload)
        else:
            self._refuse("bad_topic", f"topic {topic!r} is not for hub {self.hub_id!r}")

    def _on_manifest(self, brand_id: str, payload: bytes) -> None:
        """A brand announces itself: add it to the directory (the household still has to opt in)."""
        if not payload:
            return  # a cleared retained message
        try:
            manifest = Manifest.from_json(payload, source=f"manifest of {brand_id!r}")
        except ManifestError as err:
            self._refuse(err.code, str(err))
            return
        if manifest.id != brand_id:
            self._refuse("invalid_manifest", f"manifest for {manifest.id!r} on {brand_id!r}'s topic")
            return
        known = self.store.brand(brand_id)
        if known is not None and known.manifest == manifest:
            return
        if known is None and len(self.store.brands()) >= self.MAX_DIRECTORY:
            self._refuse("directory_full", f"manifest of {brand_id!r}: {self.MAX_DIRECTORY} brands known")
            return
        self.store.upsert_manifest(manifest)
        self.router.add(manifest)
        log.info("brand directory: %s %s", "updated" if known else "new brand", brand_id)
        self._check_keys(brand_id)
        self._emit("brand", self._brand_event(brand_id))

    def _check_keys(self, brand_id: str) -> None:
        """Pin an opted-in brand's keys the first time they are seen; hold a change for approval."""
        brand = self.brand(brand_id)
        announced = _manifest_keys(brand.manifest)
        if not brand.opted_in or announced is None:
            return
        if brand.pinned is None:
            self.store.set_keys(brand_id, pinned=announced, pending=None)
            log.info("pinned the keys of %s: %s", brand_id, announced.fingerprint())
            if brand_id in self._unverified_status:  # its presence came before its keys
                self._on_status(brand_id, self._unverified_status.pop(brand_id))
        elif announced not in (brand.pinned, brand.pending):
            self.store.set_keys(brand_id, pinned=brand.pinned, pending=announced)
            self.stats["key_changes_pending"] += 1
            log.warning(
                "brand %s announced new keys %s: the household must approve",
                brand_id,
                announced.fingerprint(),
            )
        elif announced == brand.pinned and brand.pending is not None:
            self.store.set_keys(brand_id, pinned=brand.pinned, pending=None)

    def approve_keys(self, brand_id: str) -> BrandRow:
        """The household accepts the new keys a brand announced (shown by their fingerprint)."""
        brand = self.brand(brand_id)
        if brand.pending is None:
            raise NoPendingKeys(f"brand {brand_id!r} has no key change waiting for approval")
        self.store.set_keys(brand_id, pinned=brand.pending, pending=None)
        if brand_id in self._unverified_status:  # its presence, signed with the keys just approved
            self._on_status(brand_id, self._unverified_status.pop(brand_id))
        self.store.outbox.retry_now(brand_id)
        self._wake.set()
        self._emit("brand", self._brand_event(brand_id))
        return self.brand(brand_id)

    def _on_status(self, brand_id: str, payload: bytes) -> None:
        brand = self.store.brand(brand_id)
        if brand is None or not (brand.opted_in or self._forgetting(brand_id)) or not payload:
            return  # not a brand we listen to, or a cleared retained message
        envelope = self._verified_presence(brand, payload)
        if envelope is None or not isinstance(envelope.body, PresenceBody):
            return
        online = envelope.body.status == "online"
        if online == brand.online:
            return
        self.store.set_online(brand_id, online)
        if online:
            self.store.outbox.retry_now(brand_id)
            self._wake.set()
        log.info("brand %s is %s", brand_id, envelope.body.status)
        self._emit("brand", self._brand_event(brand_id))

    def _verified_presence(self, brand: BrandRow, payload: bytes) -> Envelope | None:
        """The brand's presence if its signature checks; kept aside if its keys are not settled yet."""
        try:
            envelope = self.wire.decode(payload, lambda _sender, _keys: brand.pinned)
        except UnknownKey:
            self._unverified_status[brand.id] = payload  # checked again once its keys are pinned
            return None
        except ProtocolError as err:
            if isinstance(err, BadSignature) and brand.pending is not None:
                self._unverified_status[brand.id] = payload  # new keys: checked again once approved
            self._refuse(err.code, f"status of {brand.id!r}: {err}")
            return None
        if not isinstance(envelope.body, PresenceBody) or envelope.sender != brand.id:
            self._refuse("invalid_envelope", f"status of {brand.id!r} is not its presence")
            return None
        return envelope

    async def _on_envelope(self, brand_id: str, payload: bytes) -> None:
        brand = self.store.brand(brand_id)
        if brand is None or (brand.pinned is None and not brand.opted_in):
            self._refuse("not_opted_in", f"hub {self.hub_id!r} has not opted into brand {brand_id!r}")
            return
        try:
            raw = self.wire.open(payload, lambda _sender, _keys: brand.pinned)
        except (BadSignature, UnknownKey) as err:
            # Anyone on the broker could have sent this: count it, never answer it.
            self._refuse(err.code, f"from {brand_id!r}: {err}")
            return
        except FoyerError as err:
            await self._refuse_to(brand_id, err, None)  # the id is not trustworthy: no ref
            return
        envelope_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        try:
            envelope = validate(raw)
            if envelope.sender != brand_id:
                raise InvalidEnvelope(
                    f"sender {envelope.sender!r} does not match the topic's brand {brand_id!r}"
                )
            if envelope.type == "forgotten" and self._forgetting(brand_id):
                self._on_forgotten(brand, envelope)
                self._background(self._send_receipt(brand_id, envelope.id))
                return
            if not brand.opted_in:  # a brand we knew: tell it (verified) so it stops resending
                raise NotOptedIn(f"hub {self.hub_id!r} is no longer opted into brand {brand_id!r}")
            if self.store.replay.seen(envelope.id):
                self._on_duplicate(brand, envelope)
                return
            try:
                self.store.replay.check(Header.of(envelope))
            except ExpiredEnvelope as err:
                # From the future: the sender's clock is ahead; no ref, so it keeps the envelope.
                await self._refuse_to(brand_id, err, None if err.future else envelope.id)
                return
            await self._accept(brand, envelope)
            self.store.replay.remember(envelope.id, envelope.ts)
        except FoyerError as err:
            await self._refuse_to(brand_id, err, envelope_id)

    def _on_duplicate(self, brand: BrandRow, envelope: Envelope) -> None:
        """An envelope already accepted: its sender missed our receipt (or someone replays it)."""
        self.refused["replayed"] += 1
        if envelope.type not in ("receipt", "error"):  # everything else is acknowledged again
            self._background(self._send_receipt(brand.id, envelope.id))

    async def _accept(self, brand: BrandRow, envelope: Envelope) -> None:
        match envelope.body:
            case ReceiptBody():
                if envelope.ref:
                    self._settle(brand.id, envelope.ref, "delivered")
            case ReplyBody() as reply:
                author = {"kind": reply.author.kind, "name": reply.author.name}
                await self._store_incoming(
                    brand, envelope, envelope.conversation, author, {"suggestions": reply.suggestions}
                )
            case NotificationBody() as note:
                decision = self.policy.decide(
                    brand.id, HOUSEHOLD, note.category, note.expires_at, ref=envelope.id
                )
                self.stats[f"notifications_{decision.action}"] += 1
                if decision.action in ("block", "drop"):  # counted by the policy; its content is not kept
                    self._background(self._send_receipt(brand.id, envelope.id))
                    return
                author = {"kind": "bot", "name": brand.manifest.name}
                await self._store_incoming(
                    brand,
                    envelope,
                    envelope.conversation or new_id(),
                    author,
                    {"category": note.category, "title": note.title, "release_at": decision.release_at},
                    status="held" if decision.action == "hold" else "received",
                )
            case DataRequestBody() as asked:
                with self.store.transaction():
                    self._on_data_request(brand, envelope, asked)
                self._background(self._send_receipt(brand.id, envelope.id))
            case HandoffBody() as handoff:
                with self.store.transaction():
                    self._on_handoff(brand, envelope, handoff)
                self._background(self._send_receipt(brand.id, envelope.id))
            case ErrorBody() as error:
                log.warning(
                    "brand %s reports %s on %s: %s", brand.id, error.code, envelope.ref, error.message
                )
                self.stats["errors_from_brands"] += 1
                if envelope.ref:
                    self._settle(brand.id, envelope.ref, "failed")
            case _:
                raise UnknownMessageType(
                    f"a brand may not send {envelope.type!r} to a hub; expected reply, notification,"
                    " handoff, data_request, forgotten, receipt or error"
                )

    def _settle(self, brand_id: str, ref: str, status: str) -> None:
        """A brand acknowledged (or refused) one of our messages: out of the outbox, new status.

        Both in one transaction, and only for a message that was for this brand. A forget
        request is settled by ``forgotten``, not by a receipt.
        """
        if ref == self.forget_status(brand_id).get("request") and status == "delivered":
            return
        with self.store.transaction():
            row = (
                self.store.set_status(ref, status, only_from=(*OUT_PENDING, "sent"))
                if self.store.outbox.ack(ref, brand_id)
                else None
            )
        self._emit_message(row)

    async def _store_incoming(
        self,
        brand: BrandRow,
        envelope: Envelope,
        conversation: str | None,
        author: dict[str, str],
        extra: dict[str, Any],
        *,
        status: str = "received",
    ) -> None:
        """Store a reply or notification once (by envelope id), then acknowledge it."""
        body = envelope.body
        if conversation is None or not isinstance(body, ReplyBody | NotificationBody):
            raise InvalidEnvelope(f"a {envelope.type} needs a conversation id")
        with self.store.transaction():
            if isinstance(body, NotificationBody):
                self.store.create_conversation(brand.id, kind="notification", conversation_id=conversation)
            if self.store.conversation_brand(conversation) != brand.id:
                raise UnknownConversation(f"conversation {conversation!r} is not with brand {brand.id!r}")
            row = self.store.add_message(
                message_id=envelope.id,
                conversation_id=conversation,
                brand_id=brand.id,
                direction="in",
                type_=envelope.type,
                text=body.text,
                lang=body.lang,
                author_kind=author["kind"],
                author_name=author["name"],
                status=status,
                ref=envelope.ref,
                extra={**extra, "sent_at": envelope.ts},
            )
        if row is not None and isinstance(body, ReplyBody):
            conversation_row = self.store.conversation(conversation)
            flag = "had_human" if body.author.kind == "human" else "had_bot"
            self.store.update_conversation(
                conversation, first_reply_at=conversation_row["first_reply_at"] or now_ms(), **{flag: 1}
            )
        if row is None:
            existing = self.store.message(envelope.id)
            if existing is None or existing.brand_id != brand.id or existing.direction != "in":
                raise InvalidEnvelope(f"envelope id {envelope.id} is already used by another message")
            self.stats["duplicates"] += 1
        else:
            self.stats[f"{envelope.type}_received"] += 1
            self._emit_message(row)
        self._background(self._send_receipt(brand.id, envelope.id))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Receipts and errors go out without holding up the next incoming message."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_receipt(self, brand_id: str, ref: str) -> None:
        receipt = Envelope(
            type="receipt", sender=self.hub_id, recipient=brand_id, ref=ref, body=ReceiptBody()
        )
        try:
            await self.link.publish(Topics.to_brand(brand_id, self.hub_id), self._wire_bytes(receipt))
        except BrokerError as err:
            log.warning("receipt for %s not sent (the brand will resend): %s", ref, err)

    def _refuse(self, code: str, message: str) -> None:
        self.refused[code] += 1
        log.warning("refused (%s): %s", code, message)

    async def _refuse_to(self, brand_id: str, err: FoyerError, ref: str | None) -> None:
        """Count and log a refused envelope, and tell the brand why where it can be addressed."""
        self._refuse(err.code, f"from brand {brand_id!r}: {err}")
        error = Envelope(
            type="error",
            sender=self.hub_id,
            recipient=brand_id,
            ref=ref,
            body=ErrorBody(code=err.code, message=str(err)[:1000]),
        )
        try:
            await self.link.publish(Topics.to_brand(brand_id, self.hub_id), self._wire_bytes(error))
        except (BrokerError, UnknownKey) as exc:
            log.warning("could not tell brand %s about the refusal: %s", brand_id, exc)

    # --- health ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "hub_id": self.hub_id,
            "hub_keys": self.wire.public.fingerprint(),
            "broker_connected": self.link.connected,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "outbox_pending": self.store.outbox.pending(),
            "refused": dict(self.refused),
            "refused_total": sum(self.refused.values()),
            "stats": dict(self.stats),
        }


def _manifest_keys(manifest: Manifest) -> PublicKeys | None:
    try:
        return PublicKeys.from_dict(manifest.keys) if manifest.keys else None
    except (KeyError, ValueError, TypeError):
        return None


_TYPE_OF: dict[type, str] = {
    MessageBody: "message",
    DataResponseBody: "data_response",
    HandoffBody: "handoff",
    FeedbackBody: "feedback",
    IdeaBody: "idea",
}


def _median(values: list[int]) -> int | None:
    return int(statistics.median(values)) if values else None


def _contact(contact: Contact, lang: str) -> str:
    label = (contact.label.fr if lang == "fr" else contact.label.en) if contact.label else contact.kind
    return f"{label} {contact.value}"


def _gate_extra(gated: GateResult | None) -> dict[str, Any]:
    if gated is None or not (gated.masked or gated.disclosed):
        return {}
    return {
        "sent_text": gated.text,
        "masked": [{"kind": f.kind, "scope": f.scope} for f in gated.masked],
        "disclosed": [{"kind": f.kind, "scope": f.scope} for f in gated.disclosed],
    }
