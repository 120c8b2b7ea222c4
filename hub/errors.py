"""Foyer's exceptions, one root and a small hierarchy.

    FoyerError
    ├── ProtocolError          a payload on the wire is not a valid Foyer v1 envelope
    │   ├── PayloadTooLarge    over the 64 KiB limit (code ``too_large``)
    │   ├── MalformedPayload   not JSON, or not a JSON object (code ``malformed_json``)
    │   ├── UnsupportedVersion protocol version we do not speak (``unsupported_version``)
    │   ├── UnknownMessageType a ``type`` we do not know (``unknown_type``)
    │   └── InvalidEnvelope    fields missing or of the wrong shape (``invalid_envelope``)
    ├── RoutingError           the hub cannot tell, or may not use, the brand
    │   ├── UnknownBrand       no such brand in the directory (``unknown_brand``)
    │   ├── NotOptedIn         the household did not opt into this brand (``not_opted_in``)
    │   └── AmbiguousBrand     the text names none or several brands: ask, don't guess
    ├── UnknownConversation    a conversation id the hub never opened (``unknown_conversation``)
    ├── ManifestError          a brand manifest that does not validate
    ├── NoPendingKeys          approving keys a brand never announced (``no_pending_keys``)
    ├── InvalidConsent         a scope the brand does not ask for, a bad state (``invalid_consent``)
    ├── BrokerError            the MQTT side refused or failed an operation
    └── AuthError              a household device is not allowed to do this
        ├── Unauthorized       no valid device token (``unauthorized``, HTTP 401)
        ├── Forbidden          the device's role may not do this (``forbidden``, HTTP 403)
        └── PairingFailed      a wrong, used or expired pairing code (``pairing_failed``)

Each error carries a machine ``code`` (the same string the wire's error
envelope uses) and a message that names the bad value and what was expected.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousBrand",
    "AuthError",
    "BrokerError",
    "Forbidden",
    "FoyerError",
    "InvalidConsent",
    "InvalidEnvelope",
    "MalformedPayload",
    "ManifestError",
    "NoPendingKeys",
    "NotOptedIn",
    "PairingFailed",
    "PayloadTooLarge",
    "ProtocolError",
    "RoutingError",
    "Unauthorized",
    "UnknownBrand",
    "UnknownConversation",
    "UnknownMessageType",
    "UnsupportedVersion",
]


class FoyerError(Exception):
    """Root of every error Foyer raises on purpose."""

    code = "error"


class ProtocolError(FoyerError):
    code = "invalid_envelope"


class PayloadTooLarge(ProtocolError):
    code = "too_large"


class MalformedPayload(ProtocolError):
    code = "malformed_json"


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"


class UnknownMessageType(ProtocolError):
    code = "unknown_type"


class InvalidEnvelope(ProtocolError):
    code = "invalid_envelope"


class RoutingError(FoyerError):
    code = "routing"


class UnknownBrand(RoutingError):
    code = "unknown_brand"


class NotOptedIn(RoutingError):
    code = "not_opted_in"


class AmbiguousBrand(RoutingError):
    """The router could not pick one brand; ``candidates`` lists what it considered."""

    code = "ambiguous_brand"

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


class UnknownConversation(FoyerError):
    code = "unknown_conversation"


class ManifestError(FoyerError):
    code = "invalid_manifest"


class NoPendingKeys(FoyerError):
    code = "no_pending_keys"


class InvalidConsent(FoyerError):
    code = "invalid_consent"


class BrokerError(FoyerError):
    code = "broker"


class AuthError(FoyerError):
    code = "unauthorized"


class Unauthorized(AuthError):
    code = "unauthorized"


class Forbidden(AuthError):
    code = "forbidden"


class PairingFailed(AuthError):
    code = "pairing_failed"
