"""Envelopes on the wire: bodies sealed for the recipient, every envelope signed by its sender.

A ``message``, ``reply``, ``notification`` or ``error`` travels with no ``body``:
its body is in ``sealed`` (``crypto_box_seal`` to the recipient's box key), so
the broker sees only routing fields and ciphertext. A ``receipt`` or
``presence`` keeps its (non-secret) body in clear. Every envelope has ``sig``,
the sender's Ed25519 signature over the header and the sealed or clear body
(the exact bytes are specified in :mod:`hub.crypto`). A hub's envelopes also
carry ``keys``, its public keys, which a brand pins at first contact.

:meth:`Wire.decode` checks, in this order: size, JSON, version, type and
header fields (:func:`hub.protocol.parse`); the sender's pinned keys
(``unknown_key``); the signature (``bad_signature``), *before* anything is
decrypted; the opening (``cannot_open``); then the body (``invalid_envelope``).
Replays and expiry are the receiver's job (:class:`hub.crypto.ReplayGuard`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hub.crypto import (
    BadSignature,
    Header,
    Identity,
    PublicKeys,
    UnknownKey,
    canonical_json,
    open_sealed,
    seal,
    sign_only,
    verify_signed,
)
from hub.errors import InvalidEnvelope, PayloadTooLarge
from hub.protocol import MAX_PAYLOAD_BYTES, Envelope, parse, validate

__all__ = ["SEALED_TYPES", "KeyLookup", "Wire"]

SEALED_TYPES = frozenset(
    {
        "message",
        "reply",
        "notification",
        "error",
        "handoff",
        "feedback",
        "idea",
        "forget",
        "forgotten",
        "data_request",
        "data_response",
    }
)

KeyLookup = Callable[[str, dict[str, str] | None], PublicKeys | None]
"""``(sender id, keys the envelope carries) -> the keys to verify with``, or None if unknown."""


class Wire:
    """Seal and sign what one identity sends; verify and open what it receives."""

    def __init__(self, me: Identity) -> None:
        self.me = me
        self.public = me.public()
        # After a rotation, the keys we announce carry the proof that the old keys vouch for them.
        self._announced = self.public.as_dict()
        if me.previous_public() is not None:
            self._announced["proof"] = me.rotation_proof()

    def encode(self, envelope: Envelope, recipient: PublicKeys | None, *, with_keys: bool = False) -> bytes:
        """The wire bytes of ``envelope``; :class:`UnknownKey` if it must be sealed and we have no key."""
        raw: dict[str, Any] = envelope.model_dump(mode="json", exclude_none=True)
        body = canonical_json(raw.pop("body"))
        raw.pop("sealed", None)
        raw.pop("sig", None)
        header = Header.of(envelope)
        if envelope.type in SEALED_TYPES:
            if recipient is None:
                raise UnknownKey(
                    f"no keys pinned for {envelope.recipient!r}: cannot seal {envelope.type} {envelope.id}",
                    envelope.id,
                )
            raw["sealed"], raw["sig"] = seal(body, header, self.me, recipient.box)
        else:
            raw["body"] = json.loads(body)
            raw["sig"] = sign_only(body, header, self.me)
        if with_keys:
            raw["keys"] = dict(self._announced)
        payload = json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode()
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(
                f"envelope {envelope.id} is {len(payload)} bytes sealed; the limit is {MAX_PAYLOAD_BYTES}"
            )
        return payload

    def decode(self, payload: bytes, keys_of: KeyLookup) -> Envelope:
        """Verify, open and validate ``payload``; a precise :class:`~hub.errors.ProtocolError` if not."""
        return validate(self.open(payload, keys_of))

    def open(self, payload: bytes, keys_of: KeyLookup) -> dict[str, Any]:
        """Verify the signature and open the body: the raw envelope with its body in clear.

        Errors raised here come before (or, for ``cannot_open``, right after) the signature
        check: the envelope's id cannot be trusted, so never echo it in a reply.
        """
        raw = parse(payload)
        envelope_id = raw.get("id")
        sig = raw.pop("sig", None)
        sealed = raw.pop("sealed", None)
        if not isinstance(sig, str):
            raise BadSignature(f"envelope {envelope_id!r} is not signed", envelope_id)
        carried = raw.get("keys")
        if carried is not None and not isinstance(carried, dict):
            raise InvalidEnvelope(f"envelope {envelope_id!r}: keys must be an object")
        sender = raw.get("sender")
        pinned = keys_of(sender, carried) if isinstance(sender, str) else None
        if pinned is None:
            raise UnknownKey(f"envelope {envelope_id!r}: no keys known for sender {sender!r}", envelope_id)
        header = Header.from_mapping(raw)
        if raw["type"] in SEALED_TYPES:
            if not isinstance(sealed, str) or "body" in raw:
                raise InvalidEnvelope(f"a {raw['type']} envelope must be sealed, with no clear body")
            opened = open_sealed(sealed, sig, header, pinned.sign, self.me)
            try:
                raw["body"] = json.loads(opened)
            except ValueError as err:
                raise InvalidEnvelope(f"envelope {envelope_id!r}: the sealed body is not JSON") from err
        else:
            if sealed is not None:
                raise InvalidEnvelope(f"a {raw['type']} envelope is signed, not sealed")
            try:
                body = canonical_json(raw.get("body"))
            except (TypeError, ValueError) as err:
                raise BadSignature(f"envelope {envelope_id!r}: body cannot be verified", envelope_id) from err
            verify_signed(sig, header, body, pinned.sign)
        return raw
