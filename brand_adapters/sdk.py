"""The brand SDK: plug a bot into Foyer in a few lines.

    app = BrandApp(manifest, broker=parse_broker_url("mqtt://…"), state_path=Path("state.db"))

    @app.on_message
    async def answer(msg: Incoming) -> str:
        return f"Bien reçu : {msg.text}"

    async with app:
        await app.serve_forever()

What the SDK does for you:

- connects with a persistent session, publishes the brand's manifest and its
  presence (retained ``online``; the last will says ``offline``);
- writes every incoming message to its SQLite state *before* acknowledging it
  with a receipt, deduplicates by envelope id, and runs the handler once per
  message, even across a crash (unhandled messages are resumed on start);
- keeps per-conversation state (``msg.state``, a JSON-able dict) between turns;
- puts every reply and notification in a durable outbox that is re-published
  with backoff until the hub's receipt arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiomqtt

from hub.crypto import BadSignature, Header, Identity, PublicKeys, ReplayGuard, UnknownKey
from hub.errors import BrokerError, ProtocolError
from hub.mqtt import BrokerSettings, MqttLink
from hub.outbox import Outbox, OutboxItem, connect_sqlite, pump
from hub.protocol import (
    Author,
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
    now_ms,
)
from hub.wire import Wire

__all__ = ["Answer", "BrandApp", "Incoming", "MessageHandler"]

log = logging.getLogger(__name__)

Lang = Literal["fr", "en"]

SDK_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    id TEXT PRIMARY KEY,
    hub_id TEXT NOT NULL,
    conversation TEXT,
    payload BLOB NOT NULL,
    status TEXT NOT NULL,          -- received | handled
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_keys (
    hub_id TEXT PRIMARY KEY,
    keys TEXT NOT NULL,
    pinned_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS conversation_state (
    conversation TEXT PRIMARY KEY,
    hub_id TEXT NOT NULL,
    state TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Answer:
    """One reply to send; a handler may return several, or plain strings."""

    text: str
    suggestions: Sequence[str] = ()
    lang: Lang | None = None
    author: Author | None = None


@dataclass
class Incoming:
    """A household member's message, as the brand receives it (after the hub's privacy gate)."""

    id: str
    hub_id: str
    conversation: str
    text: str
    lang: Lang
    data: dict[str, str]
    state: dict[str, Any] = field(default_factory=dict)


HandlerResult = str | Answer | Sequence[str | Answer] | None
MessageHandler = Callable[[Incoming], Awaitable[HandlerResult]]


class BrandApp:
    """One brand's connection to the Foyer network; use it as ``async with``."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        broker: BrokerSettings,
        state_path: Path | str,
        bot_name: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.brand_id = manifest.id
        self.bot_name = bot_name or f"Assistant {manifest.name}"
        self._broker = broker
        self._state_path = state_path
        self._client_id = client_id or f"foyer-brand-{manifest.id}"
        self._handler: MessageHandler | None = None
        self._conn = connect_sqlite(state_path)
        self._conn.executescript(SDK_SCHEMA)
        self._outbox = Outbox(self._conn)
        self._replay = ReplayGuard(self._conn)
        self.identity = Identity.load_or_create(Path(state_path).with_suffix(".keys.json"))
        self.wire = Wire(self.identity)
        self.manifest = manifest.model_copy(update={"keys": self.identity.public().as_dict()})
        self._link: MqttLink | None = None
        self._wake = asyncio.Event()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump: asyncio.Task[None] | None = None
        self.errors_received: deque[ErrorBody] = deque(maxlen=100)

    # --- public API ------------------------------------------------------------------------

    def on_message(self, handler: MessageHandler) -> MessageHandler:
        """Register the coroutine that answers household messages (decorator)."""
        self._handler = handler
        return handler

    async def notify(
        self,
        hub_id: str,
        text: str,
        *,
        category: Literal["transactional", "service", "marketing"] = "transactional",
        title: str | None = None,
        lang: Lang = "fr",
    ) -> str:
        """Send a brand-initiated notification to one hub; returns its envelope id."""
        envelope = Envelope(
            type="notification",
            sender=self.brand_id,
            recipient=hub_id,
            body=NotificationBody(text=text, lang=lang, category=category, title=title),
        )
        self._queue(envelope)
        return envelope.id

    def handled_count(self) -> int:
        """How many household messages the handler has run on (each exactly once)."""
        return int(self._conn.execute("SELECT COUNT(*) FROM seen WHERE status='handled'").fetchone()[0])

    def pending_replies(self) -> int:
        return self._outbox.pending()

    async def serve_forever(self) -> None:
        await asyncio.Event().wait()

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._handler is None:
            raise RuntimeError(f"brand {self.brand_id!r} has no message handler; use @app.on_message")
        offline = Envelope(type="presence", sender=self.brand_id, body=PresenceBody(status="offline"))
        will = self.wire.encode(offline, None)  # signed: no one else can say we are away
        self._link = MqttLink(
            self._broker,
            self._client_id,
            self._on_mqtt,
            on_connect=self._announce,
            will=aiomqtt.Will(Topics.status(self.brand_id), will, qos=1, retain=True),
        )
        await self._link.subscribe(Topics.brand_inbox(self.brand_id))
        await self._link.__aenter__()
        self._pump = asyncio.create_task(self._pump_outbox(), name=f"brand-{self.brand_id}-outbox")
        for row in self._conn.execute("SELECT payload FROM seen WHERE status='received'").fetchall():
            self._spawn_handler(decode(bytes(row["payload"])))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pending = [t for t in (self._pump, *self._tasks) if t is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._link is not None:
            if self._link.connected:
                with contextlib.suppress(BrokerError):
                    await self._publish_presence("offline")
            await self._link.__aexit__(exc_type, exc, tb)
        self._conn.close()

    async def _announce(self) -> None:
        link = self._require_link()
        await link.publish(
            Topics.manifest(self.brand_id), self.manifest.model_dump_json().encode(), retain=True
        )
        await self._publish_presence("online")
        self._wake.set()

    async def _publish_presence(self, status: Literal["online", "offline"]) -> None:
        presence = Envelope(
            type="presence",
            sender=self.brand_id,
            body=PresenceBody(status=status, humans_available=self.manifest.humans.available),
        )
        await self._require_link().publish(
            Topics.status(self.brand_id), self.wire.encode(presence, None), retain=True
        )

    def _require_link(self) -> MqttLink:
        if self._link is None:
            raise RuntimeError("BrandApp is not started; use 'async with app:'")
        return self._link

    # --- receiving -------------------------------------------------------------------------

    async def _on_mqtt(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            channel, owner, hub_id = Topics.parse(topic)
        except ValueError:
            log.warning("ignoring message on unexpected topic %s", topic)
            return
        if channel != "to_brand" or owner != self.brand_id:
            # Some brokers (amqtt) deliver retained status/manifest to loose wildcard matches.
            log.debug("ignoring %s: not this brand's inbox", topic)
            return
        try:
            envelope = self.wire.decode(payload, self._keys_of)
        except (BadSignature, UnknownKey) as err:
            log.warning("refused an unverifiable envelope on hub %s's topic: %s", hub_id, err)
            return  # never answer: anyone on the broker could have sent it
        except ProtocolError as err:
            log.warning("refused a payload from hub %s: %s", hub_id, err)
            await self._send_now(hub_id, ErrorBody(code=err.code, message=str(err)[:1000]), ref=None)
            return
        if envelope.sender != hub_id:
            log.warning("refused: envelope says sender %r on hub %r's topic", envelope.sender, hub_id)
            return
        if envelope.keys and self._hub_keys(hub_id) is None:
            self._pin_hub(hub_id, envelope.keys)
        if envelope.type in ("message", "error"):
            try:
                self._replay.check(Header.of(envelope))
            except ProtocolError as err:
                log.warning("refused %s from hub %s: %s", envelope.id, hub_id, err)
                await self._send_now(hub_id, ErrorBody(code=err.code, message=str(err)[:1000]), envelope.id)
                return
        await self._dispatch(hub_id, envelope)

    async def _dispatch(self, hub_id: str, envelope: Envelope) -> None:
        match envelope.body:
            case MessageBody():
                await self._receive_message(envelope)
            case ReceiptBody():
                if envelope.ref:
                    self._outbox.ack(envelope.ref, hub_id)
            case ErrorBody() as error:
                log.warning("hub %s refused %s: %s (%s)", hub_id, envelope.ref, error.message, error.code)
                self.errors_received.append(error)
                if envelope.ref and self._outbox.ack(envelope.ref, hub_id):
                    log.warning("dropped %s from the outbox: the hub will never accept it", envelope.ref)
            case _:
                log.info("ignoring %s envelope from hub %s", envelope.type, hub_id)

    async def _receive_message(self, envelope: Envelope) -> None:
        if envelope.conversation is None:
            await self._send_now(
                envelope.sender,
                ErrorBody(code="invalid_envelope", message="a message needs a conversation id"),
                ref=envelope.id,
            )
            return
        inserted = self._conn.execute(
            "INSERT OR IGNORE INTO seen (id, hub_id, conversation, payload, status, received_at)"
            " VALUES (?,?,?,?, 'received', ?)",
            (envelope.id, envelope.sender, envelope.conversation, encode(envelope), now_ms()),
        ).rowcount
        if inserted:  # start answering before waiting for the broker to take the receipt
            self._spawn_handler(envelope)
        await self._send_now(envelope.sender, ReceiptBody(), ref=envelope.id)

    def _spawn_handler(self, envelope: Envelope) -> None:
        task = asyncio.create_task(self._handle(envelope), name=f"brand-handle-{envelope.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, envelope: Envelope) -> None:
        if not isinstance(envelope.body, MessageBody) or envelope.conversation is None:
            return
        conversation = envelope.conversation
        lock, waiting = self._locks.get(conversation, (asyncio.Lock(), 0))
        self._locks[conversation] = (lock, waiting + 1)  # one handler at a time per conversation
        try:
            async with lock:
                await self._handle_locked(envelope, envelope.body, conversation)
        finally:
            lock, waiting = self._locks[conversation]
            if waiting <= 1:
                del self._locks[conversation]
            else:
                self._locks[conversation] = (lock, waiting - 1)
        self._wake.set()

    async def _handle_locked(self, envelope: Envelope, body: MessageBody, conversation: str) -> None:
        row = self._conn.execute(
            "SELECT state FROM conversation_state WHERE conversation = ?", (conversation,)
        ).fetchone()
        incoming = Incoming(
            id=envelope.id,
            hub_id=envelope.sender,
            conversation=conversation,
            text=body.text,
            lang=body.lang,
            data=dict(body.data),
            state=json.loads(row["state"]) if row else {},
        )
        handler = self._handler
        if handler is None:
            return
        try:
            replies = [self._reply_envelope(incoming, answer) for answer in _answers(await handler(incoming))]
        except Exception:  # a bot bug, or an answer the protocol refuses: apologise, never go silent
            log.exception("handler failed on message %s", envelope.id)
            apology = (
                "Désolé, un incident technique m'empêche de répondre. Réessayez dans un instant."
                if incoming.lang == "fr"
                else "Sorry, a technical problem stops me from answering. Please try again soon."
            )
            replies = [self._reply_envelope(incoming, Answer(apology))]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(
                "INSERT OR REPLACE INTO conversation_state (conversation, hub_id, state) VALUES (?,?,?)",
                (conversation, incoming.hub_id, json.dumps(incoming.state)),
            )
            for reply in replies:
                self._outbox.add(reply.id, reply.recipient or "", _hub_topic(self, reply), encode(reply))
            self._conn.execute("UPDATE seen SET status='handled' WHERE id = ?", (envelope.id,))
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    # --- keys ------------------------------------------------------------------------------

    def _hub_keys(self, hub_id: str) -> PublicKeys | None:
        row = self._conn.execute("SELECT keys FROM hub_keys WHERE hub_id = ?", (hub_id,)).fetchone()
        return PublicKeys.from_dict(json.loads(row["keys"])) if row else None

    def _keys_of(self, hub_id: str, carried: dict[str, str] | None) -> PublicKeys | None:
        """The hub's pinned keys; at first contact, the keys its envelope carries (trust on first use)."""
        pinned = self._hub_keys(hub_id)
        if pinned is not None or not carried:
            return pinned
        try:
            return PublicKeys.from_dict(carried)
        except (KeyError, ValueError, TypeError):
            return None

    def _pin_hub(self, hub_id: str, keys: dict[str, str]) -> None:
        public = PublicKeys.from_dict(keys)
        self._conn.execute(
            "INSERT OR IGNORE INTO hub_keys (hub_id, keys, pinned_at) VALUES (?,?,?)",
            (hub_id, json.dumps(public.as_dict()), now_ms()),
        )
        log.info("pinned the keys of hub %s: %s", hub_id, public.fingerprint())

    def _seal(self, item: OutboxItem) -> bytes:
        envelope = decode(item.payload)
        return self.wire.encode(envelope, self._hub_keys(envelope.recipient or ""))

    def _reply_envelope(self, incoming: Incoming, answer: Answer) -> Envelope:
        return Envelope(
            type="reply",
            sender=self.brand_id,
            recipient=incoming.hub_id,
            conversation=incoming.conversation,
            ref=incoming.id,
            body=ReplyBody(
                text=answer.text,
                lang=answer.lang or incoming.lang,
                author=answer.author or Author(kind="bot", name=self.bot_name),
                suggestions=list(answer.suggestions),
            ),
        )

    # --- sending ---------------------------------------------------------------------------

    def _queue(self, envelope: Envelope) -> None:
        self._outbox.add(envelope.id, envelope.recipient or "", _hub_topic(self, envelope), encode(envelope))
        self._wake.set()

    async def _send_now(self, hub_id: str, body: ReceiptBody | ErrorBody, ref: str | None) -> None:
        """Receipts and errors are not queued: the hub re-sends what it did not see acknowledged."""
        kind: Literal["receipt", "error"] = "receipt" if isinstance(body, ReceiptBody) else "error"
        envelope = Envelope(type=kind, sender=self.brand_id, recipient=hub_id, ref=ref, body=body)
        try:
            payload = self.wire.encode(envelope, self._hub_keys(hub_id))
            await self._require_link().publish(Topics.to_hub(hub_id, self.brand_id), payload)
        except (BrokerError, UnknownKey) as err:
            log.warning("could not send %s to hub %s (it will retry): %s", kind, hub_id, err)

    async def _pump_outbox(self) -> None:
        await pump(
            self._outbox,
            self._require_link(),
            self._wake,
            peers=lambda: None,
            published=lambda _: None,
            prepare=self._seal,
        )


def _hub_topic(app: BrandApp, envelope: Envelope) -> str:
    if envelope.recipient is None:
        raise ValueError(f"envelope {envelope.id} has no recipient hub")
    return Topics.to_hub(envelope.recipient, app.brand_id)


def _answers(result: HandlerResult) -> list[Answer]:
    if result is None:
        return []
    if isinstance(result, str | Answer):
        result = [result]
    return [Answer(item) if isinstance(item, str) else item for item in result]
