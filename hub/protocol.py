"""Foyer wire protocol v1, defined once: the hub and every brand adapter import it.

An envelope is a JSON object published with QoS 1 on a topic that names the
sender's identity (so broker ACLs can enforce who may say what):

    hub → brand   foyer/v1/brand/{brand_id}/from/{hub_id}
    brand → hub   foyer/v1/hub/{hub_id}/from/{brand_id}
    presence      foyer/v1/brand/{brand_id}/status      (retained, last will)
    manifest      foyer/v1/brand/{brand_id}/manifest    (retained)

``docs/protocol.md`` explains it for a brand engineer and ``docs/asyncapi.yaml``
describes every channel and message; ``tests/test_protocol_docs.py`` keeps the
three in step.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.errors import (
    InvalidEnvelope,
    MalformedPayload,
    ManifestError,
    PayloadTooLarge,
    UnknownMessageType,
    UnsupportedVersion,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "SCOPES",
    "Author",
    "Contact",
    "DataRequestBody",
    "DataResponseBody",
    "Envelope",
    "ErrorBody",
    "FeedbackBody",
    "ForgetBody",
    "ForgottenBody",
    "HandoffBody",
    "Humans",
    "IdeaBody",
    "Manifest",
    "MessageBody",
    "NotificationBody",
    "PresenceBody",
    "ReceiptBody",
    "ReplyBody",
    "Scope",
    "ScopeRequest",
    "Topics",
    "TranscriptLine",
    "check_id",
    "decode",
    "encode",
    "new_id",
    "now_ms",
    "parse",
    "peek_id",
    "validate",
]

PROTOCOL_VERSION: Final = 1
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")

Lang = Literal["fr", "en"]
Category = Literal["transactional", "service", "marketing"]
Scope = Literal[
    "first_name",
    "full_name",
    "email",
    "phone",
    "postal_address",
    "customer_number",
    "order_history",
    "location",
    "satisfaction",
]
SCOPES: tuple[str, ...] = Scope.__args__  # type: ignore[attr-defined]


def check_id(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid hub or brand id, else raise ``ValueError`` naming it."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValueError(
            f"{kind} id {value!r} is not valid: expected 2-63 characters of a-z, 0-9, '_' or '-',"
            " starting with a letter or digit"
        )
    return value


def now_ms() -> int:
    """Milliseconds since the Unix epoch: the protocol's only time format."""
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, unique enough to deduplicate by."""
    ms = now_ms()
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


Id = Annotated[str, Field(pattern=_ID_RE.pattern)]
MsgId = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Topics:
    """Topic names; each one carries the identity the broker authenticated."""

    PREFIX = "foyer/v1"

    @staticmethod
    def to_brand(brand_id: str, hub_id: str) -> str:
        return f"foyer/v1/brand/{check_id('brand', brand_id)}/from/{check_id('hub', hub_id)}"

    @staticmethod
    def to_hub(hub_id: str, brand_id: str) -> str:
        return f"foyer/v1/hub/{check_id('hub', hub_id)}/from/{check_id('brand', brand_id)}"

    @staticmethod
    def brand_inbox(brand_id: str) -> str:
        """What a brand subscribes to: every hub's messages for it."""
        return f"foyer/v1/brand/{check_id('brand', brand_id)}/from/+"

    @staticmethod
    def status(brand_id: str) -> str:
        return f"foyer/v1/brand/{check_id('brand', brand_id)}/status"

    @staticmethod
    def manifest(brand_id: str) -> str:
        return f"foyer/v1/brand/{check_id('brand', brand_id)}/manifest"

    ALL_MANIFESTS = "foyer/v1/brand/+/manifest"
    """What a hub subscribes to for its brand directory (public, retained)."""

    @staticmethod
    def parse(topic: str) -> tuple[str, str, str]:
        """Split a Foyer topic into ``(channel, owner, sender)``.

        ``channel`` is one of ``to_brand``, ``to_hub``, ``status``, ``manifest``;
        ``sender`` is empty for status and manifest. Raises ``ValueError`` otherwise.
        """
        parts = topic.split("/")
        if len(parts) >= 4 and parts[0] == "foyer" and parts[1] == "v1":
            match parts[2:]:
                case ["brand", brand, "from", hub_id]:
                    return "to_brand", check_id("brand", brand), check_id("hub", hub_id)
                case ["hub", hub_id, "from", brand]:
                    return "to_hub", check_id("hub", hub_id), check_id("brand", brand)
                case ["brand", brand, ("status" | "manifest") as kind]:
                    return kind, check_id("brand", brand), ""
        raise ValueError(f"topic {topic!r} is not a Foyer v1 topic")


# --- bodies -----------------------------------------------------------------------------------


class MessageBody(_Model):
    """What a household member said, after the privacy gate."""

    text: Text
    lang: Lang = "fr"
    data: dict[str, str] = Field(default_factory=dict, max_length=32)


class Author(_Model):
    kind: Literal["bot", "human"] = "bot"
    name: Annotated[str, Field(min_length=1, max_length=80)]


class ReplyBody(_Model):
    """A brand's answer in a conversation; ``author`` says whether a bot or a person wrote it."""

    text: Text
    lang: Lang = "fr"
    author: Author
    suggestions: list[Annotated[str, Field(max_length=80)]] = Field(default_factory=list, max_length=8)


class NotificationBody(_Model):
    """A message the brand starts itself, sorted by category."""

    text: Text
    lang: Lang = "fr"
    category: Category = "transactional"
    title: Annotated[str, Field(max_length=120)] | None = None
    expires_at: int | None = None


class ReceiptBody(_Model):
    """Application-level acknowledgement: the recipient has persisted ``ref``."""

    status: Literal["received"] = "received"


class ErrorBody(_Model):
    code: Annotated[str, Field(min_length=1, max_length=40)]
    message: Annotated[str, Field(min_length=1, max_length=1000)]


class PresenceBody(_Model):
    status: Literal["online", "offline"]
    humans_available: bool = False


class TranscriptLine(_Model):
    role: Literal["member", "bot", "human"]
    text: Text


class HandoffBody(_Model):
    """A person of the brand taking a conversation over, or not — the same type both ways.

    hub → brand: ``request`` (the member asked, or the hub offered and the member
    accepted; with the reason, the language and a gated transcript excerpt),
    ``callback`` (no one was there: call me back), ``ended`` (the member closed it).
    brand → hub: ``accepted`` (a named agent, or a queue position and expected wait;
    sent unprompted when the bot decides to hand over), ``unavailable`` (no one now:
    ``next_available`` says when), ``ended`` (back to the bot, or closed).
    While a human holds a conversation the brand's bot stays silent.
    """

    action: Literal["request", "accepted", "unavailable", "ended", "callback"]
    origin: Literal["member", "hub", "bot"] | None = None
    reason: Annotated[str, Field(max_length=200)] | None = None
    lang: Lang = "fr"
    transcript: list[TranscriptLine] = Field(default_factory=list, max_length=20)
    agent: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    queue_position: Annotated[int, Field(ge=0, le=100_000)] | None = None
    wait_s: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] | None = None
    next_available: Annotated[str, Field(max_length=120)] | None = None
    outcome: Literal["back_to_bot", "closed"] | None = None


Rating = Annotated[int, Field(ge=1, le=5)]


class FeedbackBody(_Model):
    """The member's satisfaction answer, sent only if the household allows it."""

    rating_bot: Rating | None = None
    rating_human: Rating | None = None
    comment: Annotated[str, Field(max_length=1000)] | None = None


class IdeaBody(_Model):
    """An idea or suggestion for the brand (co-construction); the brand's receipt acknowledges it."""

    text: Text
    lang: Lang = "fr"


class ForgetBody(_Model):
    """hub → brand: the household erased this brand; forget everything about this hub.

    The brand answers with ``forgotten`` (``ref`` = this envelope's id) once it has; until
    then the hub keeps asking.
    """

    reason: Annotated[str, Field(max_length=200)] | None = None


class ForgottenBody(_Model):
    """brand → hub: everything about the hub was erased (``ref`` = the ``forget`` envelope)."""

    erased: Annotated[int, Field(ge=0)] = 0


class DataRequestBody(_Model):
    """brand → hub: the brand needs a datum in this conversation; the hub asks the member."""

    scope: Scope
    purpose: Annotated[str, Field(min_length=1, max_length=300)]
    lang: Lang = "fr"


class DataResponseBody(_Model):
    """hub → brand (``ref`` = the request): the member's answer; ``value`` only if they agreed."""

    scope: Scope
    granted: bool
    value: Annotated[str, Field(min_length=1, max_length=500)] | None = None


_BODIES: dict[str, type[_Model]] = {
    "message": MessageBody,
    "reply": ReplyBody,
    "notification": NotificationBody,
    "receipt": ReceiptBody,
    "error": ErrorBody,
    "presence": PresenceBody,
    "handoff": HandoffBody,
    "feedback": FeedbackBody,
    "idea": IdeaBody,
    "forget": ForgetBody,
    "forgotten": ForgottenBody,
    "data_request": DataRequestBody,
    "data_response": DataResponseBody,
}
MESSAGE_TYPES: tuple[str, ...] = tuple(_BODIES)
MessageType = Literal[
    "message",
    "reply",
    "notification",
    "receipt",
    "error",
    "presence",
    "handoff",
    "feedback",
    "idea",
    "forget",
    "forgotten",
    "data_request",
    "data_response",
]
Body = (
    MessageBody
    | ReplyBody
    | NotificationBody
    | ReceiptBody
    | ErrorBody
    | PresenceBody
    | HandoffBody
    | FeedbackBody
    | IdeaBody
    | ForgetBody
    | ForgottenBody
    | DataRequestBody
    | DataResponseBody
)


class Envelope(_Model):
    """One Foyer message on the wire.

    On the wire, ``body`` of a message, reply, notification or error is replaced by
    ``sealed`` (the body sealed for the recipient) and every envelope carries ``sig``
    (the sender's signature); see :mod:`hub.wire`. A hub's messages also carry its
    public ``keys`` so a brand can pin them at first contact.
    """

    v: Literal[1] = PROTOCOL_VERSION
    id: MsgId = Field(default_factory=new_id)
    type: MessageType
    sender: Id
    recipient: Id | None = None
    conversation: MsgId | None = None
    ref: MsgId | None = None
    ts: int = Field(default_factory=now_ms, ge=0)
    body: Body
    sealed: str | None = None
    sig: str | None = None
    keys: dict[str, str] | None = Field(default=None, max_length=4)

    @model_validator(mode="after")
    def _body_matches_type(self) -> Envelope:
        expected = _BODIES[self.type]
        if not isinstance(self.body, expected):
            raise ValueError(f"a {self.type!r} envelope needs a {expected.__name__} body")  # noqa: TRY004 - pydantic wants ValueError
        return self

    def encode(self) -> bytes:
        return encode(self)


def encode(envelope: Envelope) -> bytes:
    """Serialise an envelope; refuse one over :data:`MAX_PAYLOAD_BYTES` before it is published."""
    payload = envelope.model_dump_json(exclude_none=True).encode()
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"envelope {envelope.id} is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        )
    return payload


def peek_id(payload: bytes) -> str | None:
    """The ``id`` of a payload that failed to decode, when it can be read, to address an error."""
    try:
        raw = json.loads(payload) if len(payload) <= MAX_PAYLOAD_BYTES else None
    except (ValueError, RecursionError):
        return None
    value = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_-]{8,64}", value):
        return value
    return None


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "envelope"
    return f"{where}: {first['msg']}"


def parse(payload: bytes) -> dict[str, Any]:
    """Check size, JSON, version, type and the required header fields; the raw envelope dict."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        raw: Any = json.loads(payload)
    except (ValueError, RecursionError) as err:  # bad UTF-8, bad JSON, absurd numbers or nesting
        raise MalformedPayload(f"payload is not JSON: {str(err)[:200]}") from err
    if not isinstance(raw, dict):
        raise MalformedPayload(f"payload is a JSON {type(raw).__name__}; expected an object")
    version = raw.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"protocol version {version!r} is not supported; expected {PROTOCOL_VERSION}"
        )
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in _BODIES:
        raise UnknownMessageType(
            f"message type {kind!r} is unknown; expected one of {', '.join(MESSAGE_TYPES)}"
        )
    missing = [key for key in ("id", "ts", "sender") if key not in raw]
    if missing:
        raise InvalidEnvelope(f"{kind} envelope is invalid: missing {', '.join(missing)}")
    return raw


def validate(raw: dict[str, Any]) -> Envelope:
    """Validate a parsed envelope whose ``body`` is in clear (opened, or never sealed)."""
    kind = raw["type"]
    try:
        body = _BODIES[kind].model_validate(raw.get("body"), strict=True)
        return Envelope.model_validate({**raw, "body": body}, strict=True)
    except ValidationError as err:
        raise InvalidEnvelope(f"{kind} envelope is invalid: {_first_error(err)}") from err


def decode(payload: bytes) -> Envelope:
    """Parse and validate an envelope whose body is in clear, raising a precise :class:`ProtocolError`.

    Hubs and brands receive sealed envelopes: they use :class:`hub.wire.Wire`, which opens
    them and then calls :func:`validate`.
    """
    return validate(parse(payload))


# --- brand manifest ---------------------------------------------------------------------------


class LocalizedText(_Model):
    fr: Annotated[str, Field(min_length=1, max_length=500)]
    en: Annotated[str, Field(min_length=1, max_length=500)]


class ScopeRequest(_Model):
    scope: Scope
    purpose: LocalizedText
    required: bool = False


class Humans(_Model):
    """Whether the brand's people can take a conversation, and when (local time of ``timezone``)."""

    available: bool = False
    timezone: str = "Europe/Paris"
    hours: dict[
        Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        list[Annotated[str, Field(pattern=r"^\d\d:\d\d-\d\d:\d\d$")]],
    ] = Field(default_factory=dict)


class Contact(_Model):
    kind: Literal["phone", "email", "web", "store", "mail"]
    value: Annotated[str, Field(min_length=1, max_length=200)]
    label: LocalizedText | None = None


def _both_languages() -> list[Lang]:
    return ["fr", "en"]


def _transactional_only() -> list[Category]:
    return ["transactional"]


class Manifest(_Model):
    """What a brand says of itself: published retained and shipped as ``manifest.json``."""

    id: Id
    name: Annotated[str, Field(min_length=1, max_length=80)]
    aliases: list[Annotated[str, Field(min_length=2, max_length=60)]] = Field(default_factory=list)
    description: LocalizedText
    languages: list[Lang] = Field(default_factory=_both_languages, min_length=1)
    scopes: list[ScopeRequest] = Field(default_factory=list)
    categories: list[Category] = Field(default_factory=_transactional_only)
    humans: Humans = Field(default_factory=Humans)
    contact: list[Contact] = Field(default_factory=list)
    keys: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "manifest") -> Manifest:
        try:
            return cls.model_validate_json(data)
        except ValidationError as err:
            raise ManifestError(f"{source} is not a valid brand manifest: {_first_error(err)}") from err
