"""Foyer's household side: the hub, and the wire protocol every brand adapter imports.

Importing ``hub`` stays light (no web server, no broker): brand adapters only
need the protocol and the errors. The daemon is built by :func:`hub.api.create_app`.
"""

from hub.errors import FoyerError, ProtocolError
from hub.protocol import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    Envelope,
    Manifest,
    Topics,
    decode,
    encode,
    new_id,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "Envelope",
    "FoyerError",
    "Manifest",
    "ProtocolError",
    "Topics",
    "decode",
    "encode",
    "new_id",
]
