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
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from hub.crypto import BadSignature, Header, Identity, PublicKeys, UnknownKey
from hub.errors import (
    BrokerError,
    FoyerError,
    InvalidEnvelope,
    ManifestError,
    NoPendingKeys,
    NotOptedIn,
    ProtocolError,
    UnknownBrand,
    UnknownConversation,
    UnknownMessageType,
)
from hub.i18n import say
from hub.mqtt import MqttLink
from hub.outbox import OutboxItem, pump
from hub.protocol import (
    Envelope,
    ErrorBody,
    Manifest,
    MessageBody,
    NotificationBody,
    PresenceBody,
    ReceiptBody,
    ReplyBody,
    Topics,
    decode,
    encode,
    new_id,
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
    ) -> None:
        self.store = store
        self.hub_id = hub_id
        self.wire = Wire(identity)
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
            if brand.opted_in:
                await self._follow(brand.id)
            self.store.set_online(brand.id, False)  # until its retained status says otherwise
        if isinstance(self._link, MqttLink):
            await self._link.__aenter__()
        self._pump = asyncio.create_task(self._pump_outbox(), name="hub-outbox")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if isinstance(self._link, MqttLink):
            await self._link.__aexit__(exc_type, exc, tb)

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

    async def opt_in(self, brand_id: str) -> BrandRow:
        self.brand(brand_id)
        self.store.set_opt_in(brand_id, True)
        self._check_keys(brand_id)
        await self._follow(brand_id)
        self._emit("brand", self._brand_event(brand_id))
        return self.brand(brand_id)

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
        """Accept a member's message: route, persist with its outbox entry, then deliver."""
        lang = lang or detect_lang(text)
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
        conversation_id = conversation_id or new_id()
        envelope = Envelope(
            type="message",
            sender=self.hub_id,
            recipient=brand_id,
            conversation=conversation_id,
            body=MessageBody(text=text, lang=lang),
        )
        payload = encode(envelope)  # kept in clear on the home's disk; sealed when published
        status = "accepted" if brand.online else "queued"
        with self.store.transaction():
            self.store.create_conversation(brand_id, conversation_id=conversation_id)
            row = self.store.add_message(
                message_id=envelope.id,
                conversation_id=conversation_id,
                brand_id=brand_id,
                direction="out",
                type_="message",
                text=text,
                lang=lang,
                author_kind="member",
                author_name="",
                status=status,
            )
            self.store.outbox.add(envelope.id, brand_id, Topics.to_brand(brand_id, self.hub_id), payload)
        if row is None:  # a fresh UUIDv7 cannot collide; refuse loudly rather than lose it
            raise InvalidEnvelope(f"message id {envelope.id} already exists")
        self.stats["accepted"] += 1
        self._emit_message(row)
        self._wake.set()
        notice = None if brand.online else say("brand_offline", lang, brand=brand.manifest.name)
        return SendResult(message=row, brand=brand, notice=notice)

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
            b for b in self.store.brand_ids(opted_in=True, online=True) if self.brand(b).pinned is not None
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
        self.store.outbox.retry_now(brand_id)
        self._wake.set()
        self._emit("brand", self._brand_event(brand_id))
        return self.brand(brand_id)

    def _on_status(self, brand_id: str, payload: bytes) -> None:
        brand = self.store.brand(brand_id)
        if brand is None or not brand.opted_in:
            return
        if not payload:
            return  # a cleared retained message
        try:
            envelope = self.wire.decode(payload, lambda _sender, _keys: brand.pinned)
        except UnknownKey:
            self._unverified_status[brand_id] = payload  # checked again once its keys are pinned
            return
        except ProtocolError as err:
            self._refuse(err.code, f"status of {brand_id!r}: {err}")
            return
        if not isinstance(envelope.body, PresenceBody) or envelope.sender != brand_id:
            self._refuse("invalid_envelope", f"status of {brand_id!r} is not its presence")
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

    async def _on_envelope(self, brand_id: str, payload: bytes) -> None:
        brand = self.store.brand(brand_id)
        if brand is None or not brand.opted_in:
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
            if self.store.replay.seen(envelope.id):
                self._on_duplicate(brand, envelope)
                return
            self.store.replay.check(Header.of(envelope))
            await self._accept(brand, envelope)
            self.store.replay.remember(envelope.id, envelope.ts)
        except FoyerError as err:
            await self._refuse_to(brand_id, err, envelope_id)

    def _on_duplicate(self, brand: BrandRow, envelope: Envelope) -> None:
        """An envelope already accepted: its sender missed our receipt (or someone replays it)."""
        self.refused["replayed"] += 1
        if envelope.type in ("reply", "notification"):
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
                author = {"kind": "bot", "name": brand.manifest.name}
                await self._store_incoming(
                    brand,
                    envelope,
                    envelope.conversation or new_id(),
                    author,
                    {"category": note.category, "title": note.title},
                )
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
                    " receipt or error"
                )

    def _settle(self, brand_id: str, ref: str, status: str) -> None:
        """A brand acknowledged (or refused) one of our messages: out of the outbox, new status.

        Both in one transaction, and only for a message that was for this brand.
        """
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
                status="received",
                ref=envelope.ref,
                extra={**extra, "sent_at": envelope.ts},
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
