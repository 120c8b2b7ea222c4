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
  with backoff until the hub's receipt arrives;
- hands conversations to the brand's people (the desk, ``docs/desk.md``): a hub's
  ``handoff`` request is queued for the agents when people are there (``accepted``,
  with a queue position) or answered ``unavailable`` with the next opening; while
  people hold a conversation the member's messages go to the desk, not to the bot.
  A bot hands over by returning :class:`Handoff`. ``feedback`` and ``idea``
  envelopes are kept (``app.feedback()``, ``app.ideas()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiomqtt

from brand_adapters.desk.hours import check_hours, humans_open_now, next_opening
from brand_adapters.desk.state import (
    Callback,
    DeskConflict,
    DeskConversation,
    DeskEvent,
    DeskStore,
    Feedback,
    Idea,
)
from hub.crypto import (
    BadSignature,
    Header,
    Identity,
    PublicKeys,
    ReplayGuard,
    UnknownKey,
    verify_rotation,
)
from hub.errors import BrokerError, FoyerError, ManifestError, ProtocolError
from hub.mqtt import BrokerSettings, MqttLink
from hub.outbox import Outbox, OutboxItem, pump
from hub.protocol import (
    Author,
    DataRequestBody,
    DataResponseBody,
    Envelope,
    ErrorBody,
    FeedbackBody,
    ForgetBody,
    ForgottenBody,
    HandoffBody,
    IdeaBody,
    Manifest,
    MessageBody,
    NotificationBody,
    PresenceBody,
    ReceiptBody,
    ReplyBody,
    Scope,
    Topics,
    TranscriptLine,
    decode,
    encode,
    now_ms,
)
from hub.sqlite import connect_sqlite
from hub.wire import Wire

__all__ = [
    "Answer",
    "AskData",
    "BrandApp",
    "DataAnswer",
    "DataHandler",
    "DeskListener",
    "HandlerResult",
    "Handoff",
    "Incoming",
    "MessageHandler",
]

log = logging.getLogger(__name__)

Lang = Literal["fr", "en"]

SDK_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    id TEXT PRIMARY KEY,
    hub_id TEXT NOT NULL,
    conversation TEXT,
    payload BLOB NOT NULL,
    status TEXT NOT NULL,          -- received | handled | held (a message for the desk) | noted (handoff,
                                   -- feedback, idea: applied when stored)
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


@dataclass(frozen=True)
class Handoff:
    """Return this from a handler (alone or after answers) to hand the conversation to a person.

    If people are there, the conversation joins the desk's queue and the hub is told
    (``handoff accepted``, origin ``bot``, with the queue position); otherwise the hub is
    told ``unavailable`` with the next opening, and the bot stays in charge.
    """

    reason: str
    lang: Lang | None = None


@dataclass(frozen=True)
class AskData:
    """Return this from a handler to ask the member for a datum (``scope``), saying why.

    The hub asks the member (once / always / no); the answer comes back to the
    ``@app.on_data`` handler as a :class:`DataAnswer`.
    """

    scope: Scope
    purpose: str


@dataclass
class DataAnswer:
    """The member's answer to an :class:`AskData`: ``value`` is None when they said no."""

    hub_id: str
    conversation: str
    scope: str
    granted: bool
    value: str | None
    state: dict[str, Any] = field(default_factory=dict)


HandlerResult = str | Answer | Handoff | AskData | Sequence[str | Answer | Handoff | AskData] | None
MessageHandler = Callable[[Incoming], Awaitable[HandlerResult]]
DataHandler = Callable[[DataAnswer], Awaitable[HandlerResult]]
DeskListener = Callable[[DeskEvent], None]
"""Called (on the event loop) with each change at the desk: see :class:`DeskEvent`."""

WAIT_PER_POSITION_S = 120
"""The expected wait announced per place in the queue."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
        clock: Callable[[], datetime] = _utc_now,
        wait_per_position_s: int = WAIT_PER_POSITION_S,
    ) -> None:
        try:
            check_hours(manifest.humans)
        except ValueError as err:
            raise ManifestError(f"brand {manifest.id!r}: {err}") from err
        self.brand_id = manifest.id
        self.bot_name = bot_name or f"Assistant {manifest.name}"
        self._broker = broker
        self._state_path = state_path
        self._client_id = client_id or f"foyer-brand-{manifest.id}"
        self._handler: MessageHandler | None = None
        self._data_handler: DataHandler | None = None
        self._conn = connect_sqlite(state_path)
        self._conn.executescript(SDK_SCHEMA)
        self._outbox = Outbox(self._conn)
        self._replay = ReplayGuard(self._conn)
        self._desk = DeskStore(self._conn)
        self._desk_attached = False
        self._desk_listeners: list[DeskListener] = []
        self._clock = clock
        self._wait_per_position_s = wait_per_position_s
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

    def on_data(self, handler: DataHandler) -> DataHandler:
        """Register the coroutine that gets the member's answers to :class:`AskData` (decorator)."""
        self._data_handler = handler
        return handler

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

    async def serve_forever(self) -> None:
        await asyncio.Event().wait()

    def attach_desk(self) -> None:
        """Say that people work at a desk for this app: hand-off requests can now be accepted."""
        self._desk_attached = True

    @property
    def desk_attached(self) -> bool:
        return self._desk_attached

    def humans_open(self) -> bool:
        """Whether a hand-off would be accepted now: a desk is attached and it is within hours."""
        return self._desk_attached and humans_open_now(self.manifest.humans, self._clock())

    def next_available(self, lang: Lang = "fr") -> str | None:
        """When people are next there (``"lundi 09:00"``); None if this app has no desk or no hours."""
        if not self._desk_attached:
            return None
        return next_opening(self.manifest.humans, self._clock(), lang)

    def subscribe_desk(self, listener: DeskListener) -> Callable[[], None]:
        """Call ``listener`` with each :class:`DeskEvent`; returns the function that unsubscribes."""
        self._desk_listeners.append(listener)
        return lambda: self._desk_listeners.remove(listener) if listener in self._desk_listeners else None

    def desk_queue(self) -> list[DeskConversation]:
        """Conversations people hold: waiting (with their position) then taken, with their lines."""
        return self._desk.queue()

    def desk_conversation(self, conversation: str) -> DeskConversation:
        """One conversation at the desk, with its context and lines; :class:`UnknownDeskItem` if none."""
        return self._desk.require(conversation)

    def desk_take(
        self, conversation: str, agent_name: str, *, agent_id: str | None = None
    ) -> DeskConversation:
        """An agent takes a waiting conversation; the hub is told who (``handoff accepted`` + ``agent``).

        :class:`DeskConflict` if another agent has it or it is not waiting; taking one's own again
        changes nothing.
        """
        agent_id = agent_id or agent_name
        with self._transaction():
            if self._desk.take(conversation, agent_id, agent_name, now_ms()):
                taken = self._desk.require(conversation)
                self._queue(
                    self._handoff_envelope(
                        taken.hub_id,
                        conversation,
                        taken.request_id,
                        HandoffBody(
                            action="accepted", origin=_origin(taken.origin), agent=agent_name, lang=taken.lang
                        ),
                    )
                )
        self._emit(DeskEvent("queue", conversation))
        return self._desk.require(conversation)

    def desk_reply(
        self,
        conversation: str,
        agent_name: str,
        text: str,
        *,
        agent_id: str | None = None,
        lang: Lang | None = None,
    ) -> str:
        """Answer the member as a person (``reply``, author kind ``human``); returns the envelope id.

        The agent must hold the conversation (:class:`DeskConflict` otherwise).
        """
        with self._transaction():
            held = self._desk.claim(conversation, agent_id or agent_name)
            reply_lang = lang or held.lang
            envelope = Envelope(
                type="reply",
                sender=self.brand_id,
                recipient=held.hub_id,
                conversation=conversation,
                ref=self._desk.last_member_line(conversation) or held.request_id,
                body=ReplyBody(text=text, lang=reply_lang, author=Author(kind="human", name=agent_name)),
            )
            self._queue(envelope)
            self._desk.add_line(
                envelope.id,
                conversation,
                role="human",
                author=agent_name,
                text=text,
                lang=reply_lang,
                at=now_ms(),
            )
        self._emit(DeskEvent("reply", conversation, text))
        return envelope.id

    def desk_release(
        self,
        conversation: str,
        outcome: Literal["back_to_bot", "closed"],
        *,
        agent_name: str | None = None,
        agent_id: str | None = None,
    ) -> DeskConversation:
        """People let the conversation go: back to the bot, or closed (``handoff ended`` + ``outcome``).

        With ``agent_name``, only the agent who holds it (or anyone, while it is still waiting)
        may release it: :class:`DeskConflict` otherwise.
        """
        with self._transaction():
            held = self._desk.require(conversation)
            if held.status == "taken" and agent_name is not None:
                self._desk.claim(conversation, agent_id or agent_name)
            if not self._desk.end(
                conversation,
                status="bot" if outcome == "back_to_bot" else "closed",
                outcome=outcome,
                at=now_ms(),
            ):
                raise DeskConflict(f"conversation {conversation!r} is {held.status}: no one holds it")
            self._queue(
                self._handoff_envelope(
                    held.hub_id,
                    conversation,
                    held.request_id,
                    HandoffBody(
                        action="ended", outcome=outcome, agent=held.agent_name or agent_name, lang=held.lang
                    ),
                )
            )
        self._emit(DeskEvent("queue", conversation))
        return self._desk.require(conversation)

    def desk_callbacks(self, *, include_done: bool = False) -> list[Callback]:
        """Members who asked to be called back, oldest first."""
        return self._desk.callbacks(include_done=include_done)

    def desk_callback_done(self, callback_id: str, agent_name: str) -> Callback:
        """Mark a callback as dealt with (the agent called, or answered the conversation)."""
        with self._transaction():
            self._desk.callback(callback_id)
            self._desk.callback_done(callback_id, agent_name, now_ms())
        self._emit(DeskEvent("callback"))
        return self._desk.callback(callback_id)

    def desk_take_callback(
        self, callback_id: str, agent_name: str, *, agent_id: str | None = None
    ) -> DeskConversation:
        """Answer a callback in its conversation: the agent takes it at once (``accepted`` + ``agent``)."""
        callback = self._desk.callback(callback_id)
        if callback.conversation is None:
            raise DeskConflict(f"callback {callback_id!r} names no conversation to answer in")
        current = self._desk.get(callback.conversation)
        if current is not None and current.status == "taken" and current.agent_id != (agent_id or agent_name):
            raise DeskConflict(f"conversation {callback.conversation!r} is taken by {current.agent_name}")
        with self._transaction():
            if not self._desk.holding(callback.conversation):
                self._desk.enqueue(
                    callback.conversation,
                    hub_id=callback.hub_id,
                    origin="member",
                    reason=callback.reason,
                    lang=callback.lang,
                    transcript=list(callback.transcript),
                    request_id=callback.id,
                    at=now_ms(),
                )
            self._desk.callback_done(callback_id, agent_name, now_ms())
        self._emit(DeskEvent("callback"))
        return self.desk_take(callback.conversation, agent_name, agent_id=agent_id)

    def ideas(self) -> list[Idea]:
        """Ideas households sent the brand, oldest first."""
        return self._desk.ideas()

    def feedback(self) -> list[Feedback]:
        """Satisfaction answers households chose to share, oldest first."""
        return self._desk.feedback()

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
            body=PresenceBody(
                status=status, humans_available=self.manifest.humans.available and self._desk_attached
            ),
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
        if envelope.keys and self._keys_of(hub_id, envelope.keys) != self._hub_keys(hub_id):
            self._pin_hub(hub_id, envelope.keys)  # first contact, or a proven rotation
        if envelope.type not in ("receipt", "error", "forget"):
            # A forget may be re-sent for weeks with its first timestamp: always honour it.
            # An error is never answered with an error.
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
            case HandoffBody() as handoff:
                await self._receive_handoff(envelope, handoff)
            case FeedbackBody() | IdeaBody():
                await self._receive_opinion(envelope)
            case DataResponseBody() as answer:
                await self._receive_data(envelope, answer)
            case ForgetBody():
                await self._forget(envelope)
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

    async def _receive_handoff(self, envelope: Envelope, handoff: HandoffBody) -> None:
        """A hub asks for a person (``request``), to be called back (``callback``), or closed (``ended``)."""
        hub_id = envelope.sender
        problem = None
        if handoff.action in ("accepted", "unavailable"):
            problem = f"a hub sends handoff request, callback or ended, not {handoff.action!r}"
        elif envelope.conversation is None and handoff.action != "callback":
            problem = f"a handoff {handoff.action} needs a conversation id"
        if problem is not None:
            await self._send_now(hub_id, ErrorBody(code="invalid_envelope", message=problem), envelope.id)
            return
        events: list[DeskEvent] = []
        with self._transaction():
            if self._note(envelope):  # applied once, even if the hub sends it again
                events = self._apply_handoff(envelope, handoff)
        self._emit(*events)
        await self._send_now(hub_id, ReceiptBody(), ref=envelope.id)

    def _apply_handoff(self, envelope: Envelope, handoff: HandoffBody) -> list[DeskEvent]:
        conversation = envelope.conversation
        transcript = [line.model_dump() for line in handoff.transcript]
        if handoff.action == "callback":
            self._desk.add_callback(
                envelope.id,
                hub_id=envelope.sender,
                conversation=conversation,
                reason=handoff.reason,
                lang=handoff.lang,
                transcript=transcript,
                at=now_ms(),
            )
            return [DeskEvent("callback", conversation)]
        if conversation is None:
            return []
        if handoff.action == "ended":
            ended = self._desk.end(conversation, status="closed", outcome="member_closed", at=now_ms())
            return [DeskEvent("queue", conversation)] if ended else []
        return self._hand_over(
            envelope.sender,
            conversation,
            origin=handoff.origin or "member",
            reason=handoff.reason,
            lang=handoff.lang,
            transcript=transcript,
            request_id=envelope.id,
        )

    def _hand_over(
        self,
        hub_id: str,
        conversation: str,
        *,
        origin: Literal["member", "hub", "bot"],
        reason: str | None,
        lang: Lang,
        transcript: list[dict[str, str]],
        request_id: str,
    ) -> list[DeskEvent]:
        """Queue the conversation for people and say so (``accepted``), or say ``unavailable``.

        Runs inside the caller's transaction, which also holds what triggered it.
        """
        current = self._desk.get(conversation)
        held = current is not None and current.holding
        if not held and not self.humans_open():
            body = HandoffBody(
                action="unavailable",
                origin=origin,
                reason=reason,
                lang=lang,
                next_available=self.next_available(lang),
            )
            self._queue(self._handoff_envelope(hub_id, conversation, request_id, body))
            return []
        if current is None or not current.holding:
            self._desk.enqueue(
                conversation,
                hub_id=hub_id,
                origin=origin,
                reason=reason,
                lang=lang,
                transcript=transcript,
                request_id=request_id,
                at=now_ms(),
            )
            current = self._desk.require(conversation)
        if current.status == "taken":  # asked again while an agent has it: say who
            body = HandoffBody(action="accepted", origin=origin, lang=lang, agent=current.agent_name)
        else:
            position = current.position or 1
            body = HandoffBody(
                action="accepted",
                origin=origin,
                lang=lang,
                queue_position=position,
                wait_s=position * self._wait_per_position_s,
            )
        self._queue(self._handoff_envelope(hub_id, conversation, request_id, body))
        return [DeskEvent("queue", conversation)]

    async def _receive_opinion(self, envelope: Envelope) -> None:
        """Feedback or an idea: kept for the brand, then acknowledged (the receipt is the thanks)."""
        body = envelope.body
        if not isinstance(body, FeedbackBody | IdeaBody):
            return
        kind: Literal["feedback", "idea"] = "idea" if isinstance(body, IdeaBody) else "feedback"
        with self._transaction():
            noted = self._note(envelope)
            if noted:
                self._desk.add_opinion(
                    envelope.id,
                    hub_id=envelope.sender,
                    conversation=envelope.conversation,
                    kind=kind,
                    body=body.model_dump(exclude_none=True),
                    at=now_ms(),
                )
        if noted:
            self._emit(DeskEvent(kind, envelope.conversation, getattr(body, "text", None)))
        await self._send_now(envelope.sender, ReceiptBody(), ref=envelope.id)

    def _ask_envelope(self, hub_id: str, conversation: str, ask: AskData, lang: Lang) -> Envelope:
        return Envelope(
            type="data_request",
            sender=self.brand_id,
            recipient=hub_id,
            conversation=conversation,
            body=DataRequestBody(scope=ask.scope, purpose=ask.purpose[:300], lang=lang),
        )

    async def _receive_data(self, envelope: Envelope, answer: DataResponseBody) -> None:
        """The member's answer to a data request: once, to the ``on_data`` handler."""
        with self._transaction():
            noted = self._note(envelope)
        await self._send_now(envelope.sender, ReceiptBody(), ref=envelope.id)
        if not noted or envelope.conversation is None or self._data_handler is None:
            return
        async with self._turn(envelope.conversation):
            await self._answer_data(envelope, answer, envelope.conversation)
        self._wake.set()

    def _member_lang(self, conversation: str) -> Lang:
        """The language of the member's last message in this conversation (French if none)."""
        row = self._conn.execute(
            "SELECT payload FROM seen WHERE conversation = ? AND status IN ('received', 'handled', 'held')"
            " ORDER BY received_at DESC, rowid DESC LIMIT 1",
            (conversation,),
        ).fetchone()
        body = decode(bytes(row["payload"])).body if row else None
        return body.lang if isinstance(body, MessageBody) else "fr"

    async def _answer_data(self, envelope: Envelope, answer: DataResponseBody, conversation: str) -> None:
        handler = self._data_handler
        if handler is None:
            return
        row = self._conn.execute(
            "SELECT state FROM conversation_state WHERE conversation = ?", (conversation,)
        ).fetchone()
        data = DataAnswer(
            envelope.sender,
            conversation,
            answer.scope,
            answer.granted,
            answer.value,
            json.loads(row["state"]) if row else {},
        )
        lang = self._member_lang(conversation)
        incoming = Incoming(
            id=envelope.id,
            hub_id=envelope.sender,
            conversation=conversation,
            text="",
            lang=lang,
            data={},
            state=data.state,
        )
        try:
            answers, _, asks = _split(await handler(data))
        except Exception:  # a bot bug must not lose the conversation
            log.exception("data handler failed on %s", envelope.id)
            answers, asks = [], []
        replies = [self._reply_envelope(incoming, a) for a in answers]
        replies += [self._ask_envelope(envelope.sender, conversation, ask, lang) for ask in asks]
        with self._transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO conversation_state (conversation, hub_id, state) VALUES (?,?,?)",
                (conversation, envelope.sender, json.dumps(data.state)),
            )
            for reply in replies:
                self._outbox.add(reply.id, reply.recipient or "", _hub_topic(self, reply), encode(reply))

    async def _forget(self, envelope: Envelope) -> None:
        """The household erased this brand: erase everything about that hub, then say so."""
        hub_id = envelope.sender
        with self._transaction():
            erased = sum(
                self._conn.execute(statement, (hub_id,)).rowcount
                for statement in (
                    "DELETE FROM seen WHERE hub_id = ?",
                    "DELETE FROM conversation_state WHERE hub_id = ?",
                    "DELETE FROM outbox WHERE peer = ?",
                    "DELETE FROM desk_lines WHERE conversation IN"
                    " (SELECT conversation FROM desk_conversations WHERE hub_id = ?)",
                    "DELETE FROM desk_conversations WHERE hub_id = ?",
                    "DELETE FROM desk_callbacks WHERE hub_id = ?",
                    "DELETE FROM opinions WHERE hub_id = ?",
                )
            )
            done = Envelope(
                type="forgotten",
                sender=self.brand_id,
                recipient=hub_id,
                ref=envelope.id,
                body=ForgottenBody(erased=erased),
            )
            self._outbox.add(done.id, hub_id, _hub_topic(self, done), encode(done))
        log.info("forgot hub %s (%d records), as it asked", hub_id, erased)
        self._wake.set()

    def _note(self, envelope: Envelope) -> bool:
        """Remember a hub envelope that is applied when stored; False if it was already."""
        return bool(
            self._conn.execute(
                "INSERT OR IGNORE INTO seen (id, hub_id, conversation, payload, status, received_at)"
                " VALUES (?,?,?,?, 'noted', ?)",
                (envelope.id, envelope.sender, envelope.conversation, encode(envelope), now_ms()),
            ).rowcount
        )

    def _spawn_handler(self, envelope: Envelope) -> None:
        task = asyncio.create_task(self._handle(envelope), name=f"brand-handle-{envelope.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def _turn(self, conversation: str) -> AsyncIterator[None]:
        """One handler at a time per conversation; the lock is dropped when no one waits."""
        lock, waiting = self._locks.get(conversation, (asyncio.Lock(), 0))
        self._locks[conversation] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._locks[conversation]
            if waiting <= 1:
                del self._locks[conversation]
            else:
                self._locks[conversation] = (lock, waiting - 1)

    async def _handle(self, envelope: Envelope) -> None:
        if not isinstance(envelope.body, MessageBody) or envelope.conversation is None:
            return
        async with self._turn(envelope.conversation):
            await self._handle_locked(envelope, envelope.body, envelope.conversation)
        self._wake.set()

    async def _handle_locked(self, envelope: Envelope, body: MessageBody, conversation: str) -> None:
        if self._desk.holding(conversation):
            self._hold(envelope, body, conversation)
            return
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
        handoff: Handoff | None = None
        try:
            answers, handoff, asks = _split(await handler(incoming))
            replies = [self._reply_envelope(incoming, answer) for answer in answers]
            replies += [self._ask_envelope(incoming.hub_id, conversation, ask, incoming.lang) for ask in asks]
        except Exception:  # a bot bug, or an answer the protocol refuses: apologise, never go silent
            log.exception("handler failed on message %s", envelope.id)
            apology = (
                "Désolé, un incident technique m'empêche de répondre. Réessayez dans un instant."
                if incoming.lang == "fr"
                else "Sorry, a technical problem stops me from answering. Please try again soon."
            )
            replies = [self._reply_envelope(incoming, Answer(apology))]
            handoff = None
        events: list[DeskEvent] = []
        # Check first: a forget that came while the handler ran erased this message; keep nothing.
        if self._conn.execute("SELECT 1 FROM seen WHERE id = ?", (envelope.id,)).fetchone() is None:
            log.info("message %s was forgotten while its handler ran: its answers are dropped", envelope.id)
            return
        with self._transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO conversation_state (conversation, hub_id, state) VALUES (?,?,?)",
                (conversation, incoming.hub_id, json.dumps(incoming.state)),
            )
            for reply in replies:
                self._outbox.add(reply.id, reply.recipient or "", _hub_topic(self, reply), encode(reply))
            if handoff is not None:
                events = self._bot_hands_over(incoming, handoff, replies)
            self._conn.execute("UPDATE seen SET status='handled' WHERE id = ?", (envelope.id,))
        self._emit(*events)

    def _bot_hands_over(
        self, incoming: Incoming, handoff: Handoff, replies: list[Envelope]
    ) -> list[DeskEvent]:
        """The bot decided a person should take over: the member's recent words are the context."""
        rows = self._conn.execute(
            "SELECT payload FROM seen WHERE conversation = ? AND status IN ('received', 'handled')"
            " ORDER BY received_at DESC, rowid DESC LIMIT 10",
            (incoming.conversation,),
        ).fetchall()
        said = [decode(bytes(row["payload"])).body for row in reversed(rows)]
        transcript = [
            TranscriptLine(role="member", text=body.text) for body in said if isinstance(body, MessageBody)
        ]
        transcript += [
            TranscriptLine(role="bot", text=reply.body.text)
            for reply in replies
            if isinstance(reply.body, ReplyBody)
        ]
        return self._hand_over(
            incoming.hub_id,
            incoming.conversation,
            origin="bot",
            reason=handoff.reason[:200],
            lang=handoff.lang or incoming.lang,
            transcript=[line.model_dump() for line in transcript[-20:]],
            request_id=incoming.id,
        )

    def _hold(self, envelope: Envelope, body: MessageBody, conversation: str) -> None:
        """A member's message while people hold the conversation: for the desk; the bot stays silent."""
        with self._transaction():
            self._desk.add_line(
                envelope.id,
                conversation,
                role="member",
                author=None,
                text=body.text,
                lang=body.lang,
                at=now_ms(),
            )
            self._conn.execute("UPDATE seen SET status='held' WHERE id = ?", (envelope.id,))
        self._emit(DeskEvent("message", conversation, body.text))

    # --- keys ------------------------------------------------------------------------------

    def _hub_keys(self, hub_id: str) -> PublicKeys | None:
        row = self._conn.execute("SELECT keys FROM hub_keys WHERE hub_id = ?", (hub_id,)).fetchone()
        return PublicKeys.from_dict(json.loads(row["keys"])) if row else None

    def _keys_of(self, hub_id: str, carried: dict[str, str] | None) -> PublicKeys | None:
        """The hub's pinned keys; at first contact, the keys its envelope carries (trust on first use).

        New keys replace the pinned ones only with a rotation proof signed by the pinned keys.
        """
        pinned = self._hub_keys(hub_id)
        try:
            announced = PublicKeys.from_dict(carried) if carried else None
        except (FoyerError, KeyError, ValueError, TypeError):
            announced = None
        if pinned is None or announced is None or announced == pinned:
            return pinned or announced
        proof = (carried or {}).get("proof")
        if proof and verify_rotation(pinned, announced, proof):
            return announced  # pinned (re-pinned) once the envelope verifies
        log.warning(
            "hub %s announced keys %s without a valid rotation proof", hub_id, announced.fingerprint()
        )
        return pinned

    def _pin_hub(self, hub_id: str, keys: dict[str, str]) -> None:
        public = PublicKeys.from_dict(keys)
        self._conn.execute(
            "INSERT OR REPLACE INTO hub_keys (hub_id, keys, pinned_at) VALUES (?,?,?)",
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

    def _handoff_envelope(
        self, hub_id: str, conversation: str, ref: str | None, body: HandoffBody
    ) -> Envelope:
        return Envelope(
            type="handoff",
            sender=self.brand_id,
            recipient=hub_id,
            conversation=conversation,
            ref=ref,
            body=body,
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One SQLite transaction: the state change and what it sends, or neither."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _emit(self, *events: DeskEvent) -> None:
        for event in events:
            for listener in list(self._desk_listeners):
                try:
                    listener(event)
                except Exception:  # a broken page must not stop the brand
                    log.exception("desk listener failed on %s", event)

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


def _split(result: HandlerResult) -> tuple[list[Answer], Handoff | None, list[AskData]]:
    """A handler's answers, the hand-off it asked for (the last one), and its data requests."""
    if result is None:
        return [], None, []
    if isinstance(result, str | Answer | Handoff | AskData):
        result = [result]
    answers = [
        Answer(item) if isinstance(item, str) else item for item in result if isinstance(item, str | Answer)
    ]
    handoffs = [item for item in result if isinstance(item, Handoff)]
    asks = [item for item in result if isinstance(item, AskData)]
    return answers, handoffs[-1] if handoffs else None, asks


def _origin(value: str) -> Literal["member", "hub", "bot"]:
    return "hub" if value == "hub" else "bot" if value == "bot" else "member"
