"""End-to-end sealing and signatures for Foyer envelopes (PyNaCl), plus a replay guard.

It gives an entity (a hub or a brand)
two key pairs, seals an envelope's body for its recipient, signs the envelope's
header together with that body, and opens and verifies what arrives.

Keys and encodings
==================

Every key, signature and ciphertext on the wire is **base64url without padding**
(RFC 4648 §5: alphabet ``A-Z a-z 0-9 - _``, no ``=``). It needs no escaping in
JSON, URLs or MQTT topics. Decoding is strict: any other character, a length of
``4k+1``, or a non-canonical encoding (unused low bits of the last character not
zero) is refused, so a value has exactly one spelling and a flipped character can
never decode to the same bytes.

An entity has:

* a **signing key**: Ed25519 (``nacl.signing``); public key ``sign``, 32 bytes;
* a **box key**: Curve25519 (``nacl.public``); public key ``box``, 32 bytes.

:class:`PublicKeys` carries the two public halves; ``as_dict()`` gives
``{"box": …, "sign": …}``, the shape of the manifest's ``keys`` object.

Its **fingerprint** is for people to compare out of band (a CLI, a web page, a
phone call): ``SHA-256("foyer-fingerprint-v1" || 0x00 || sign || box)`` over the
raw 32-byte keys, first ``2 * groups`` bytes, upper-case hex, in groups of four
characters joined by ``-``. The default, 5 groups (``3F2A-9C1B-77D0-1E4B-A0C2``),
is 80 bits. Three groups (48 bits) read nicely but a second key with the same
short fingerprint costs only about 2**48 hashes: hours on one GPU.

Sealing and signing
===================

``sealed`` = base64url(``SealedBox(recipient box key).encrypt(body_json)``): an
anonymous X25519 + XSalsa20-Poly1305 box (libsodium ``crypto_box_seal``, 48 bytes
of overhead). ``body_json`` is the envelope's JSON body, UTF-8.

``sig`` = base64url(Ed25519 signature, 64 bytes) by the sender's signing key over
the **signature input**, which is built from the header and a payload (the raw
sealed ciphertext, or for a signed-but-not-sealed envelope the body bytes)::

    input = lp("foyer-envelope-sig-v1")
         || lp(mode)                 ; "sealed" or "signed" (ASCII)
         || u64(v)
         || lp(id) || lp(type) || lp(sender)
         || opt(recipient) || opt(conversation) || opt(ref)
         || u64(ts)
         || lp(payload)              ; sealed: the ciphertext bytes (base64url-decoded)
                                     ; signed: body_json, exactly the bytes signed
    lp(b)  = u32be(len(b)) || b      ; 4-byte big-endian length, then the bytes
    opt(s) = 0x00                    ; field absent (omitted or null)
           | 0x01 || lp(utf8(s))     ; field present (an empty string is present)
    u64(n) = 8-byte big-endian unsigned, with 0 <= n < 2**63
    strings are UTF-8, with no normalisation

Each field has a fixed position and a length, so no two headers give the same
input. The leading context string and the mode keep an envelope signature from
ever being taken for a rotation proof, or a sealed envelope for a signed one. The
signature covers every envelope field except ``body``, ``sealed`` and ``sig``.
When the envelope is sealed, its plaintext body is the sealed one, and nothing
outside it may be used. When it is only signed, the body is in the payload.
:func:`signature_input` builds these bytes, and ``tests/test_crypto.py`` pins a
known-answer vector for implementations in other languages.

:func:`open_sealed` verifies the signature **first** and only then decrypts. It
tries the recipient's current box key, then its ``previous`` one (see rotation).

For a signed-only envelope (presence), the receiver must rebuild ``body_json``
byte for byte. :func:`canonical_json` gives one spelling to sign and to check: keys
sorted, no whitespace, UTF-8 without ``\\u`` escapes except for control characters,
integers only. For the JSON values Foyer bodies contain, this is the same as
RFC 8785 (JCS). Canonicalise the body object *as received* (the parsed JSON), not
a model that has filled in defaults.

Rotation
========

:meth:`Identity.rotate` writes a fresh pair of key pairs and keeps the old pairs as
``previous`` in the key file. For a while, peers keep sealing to the old box key:
messages in their outboxes, or sealed before they learned the new key. Those
still open, because :func:`open_sealed` also tries ``previous``. Only one
generation is kept: a second rotation forgets the oldest keys, so wait until the
new keys have spread before rotating again. :meth:`Identity.rotation_proof` signs
the new public keys with the *old* signing key: an Ed25519 signature over
``lp("foyer-rotation-v1") || lp(old sign) || lp(old box) || lp(new sign) || lp(new box)``
(raw 32-byte keys). :func:`verify_rotation` checks it, so a peer that trusts the
old keys can move to the new ones without asking a person. Rotation reads, then
replaces the file: do not run two at once, and restart (or reload) the process
that uses the keys afterwards.

Replay guard
============

:class:`ReplayGuard` refuses an envelope whose ``ts`` is more than ``window_ms``
(7 days) in the past, or more than ``future_skew_ms`` (5 minutes) in the future,
and remembers the ids it accepted in ``seen_envelopes`` for as long as they could
still pass the time check. The time check is what keeps that table small: an
envelope older than the window is refused whether or not its id was seen. A seen
id is **not** an attack by itself. Under at-least-once delivery, a sender
re-publishes the same envelope until it gets a receipt. So :meth:`ReplayGuard.seen`
is separate from :meth:`ReplayGuard.check`, and the caller re-acknowledges a seen
id without processing it again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import secrets
import sqlite3
import stat
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import nacl.exceptions
import nacl.public
import nacl.signing

from hub.errors import FoyerError, ProtocolError
from hub.protocol import now_ms

if TYPE_CHECKING:
    from hub.protocol import Envelope

__all__ = [
    "DEFAULT_FUTURE_SKEW_MS",
    "DEFAULT_WINDOW_MS",
    "BadSignature",
    "CannotOpen",
    "ExpiredEnvelope",
    "Header",
    "Identity",
    "KeyFileError",
    "PublicKeys",
    "ReplayGuard",
    "ReplayedEnvelope",
    "SecurityError",
    "UnknownKey",
    "b64decode",
    "b64encode",
    "canonical_json",
    "open_sealed",
    "seal",
    "sign_only",
    "signature_input",
    "verify_rotation",
    "verify_signed",
]

DEFAULT_WINDOW_MS: Final = 7 * 24 * 3600 * 1000
DEFAULT_FUTURE_SKEW_MS: Final = 5 * 60 * 1000

KEY_FILE_FORMAT: Final = "foyer-identity-v1"
_SIG_CONTEXT: Final = b"foyer-envelope-sig-v1"
_ROTATION_CONTEXT: Final = b"foyer-rotation-v1"
_FINGERPRINT_CONTEXT: Final = b"foyer-fingerprint-v1\x00"
_KEY_BYTES: Final = 32
_SIG_BYTES: Final = 64
_SEAL_OVERHEAD: Final = 48
_U64_LIMIT: Final = 2**63
_B64URL = re.compile(r"[A-Za-z0-9_-]*")

Mode = Literal["sealed", "signed"]


# --- errors -----------------------------------------------------------------------------------


class SecurityError(ProtocolError):
    """Root of this module's refusals of one envelope; ``envelope_id`` is its id, when it has one."""

    def __init__(self, message: str, envelope_id: object = None) -> None:
        super().__init__(message)
        self.envelope_id = envelope_id


class BadSignature(SecurityError):
    """The signature does not verify over this header and payload with the sender's key."""

    code = "bad_signature"


class CannotOpen(SecurityError):
    """The signature is good but the sealed body does not open with any of our box keys."""

    code = "cannot_open"


class ReplayedEnvelope(SecurityError):
    """An id already accepted, where a duplicate is not allowed (see :meth:`ReplayGuard.check`)."""

    code = "replayed"


class ExpiredEnvelope(SecurityError):
    """``ts`` is outside the replay window.

    ``future`` is true when ``ts`` is ahead of our clock by more than the allowed
    skew. Our own clock may be the wrong one (a device that booted before its
    clock was set), so a caller may choose to let the sender retry rather than
    refuse the envelope for good.
    """

    code = "expired"

    def __init__(self, message: str, envelope_id: object = None, *, future: bool = False) -> None:
        super().__init__(message, envelope_id)
        self.future = future


class UnknownKey(SecurityError):
    """A public key that is missing, malformed or unusable."""

    code = "unknown_key"


class KeyFileError(FoyerError):
    """A key file that cannot be used: unsafe permissions, or unreadable or corrupt content."""

    code = "key_file"


# --- encodings --------------------------------------------------------------------------------


def b64encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict inverse of :func:`b64encode`; ``ValueError`` for anything it would not produce."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as err:  # pragma: no cover - the regex and length check rule it out
        raise ValueError(f"not base64url: {err}") from err
    if b64encode(data) != text:
        raise ValueError("not the canonical base64url spelling")
    return data


def canonical_json(value: Any) -> bytes:
    """One byte spelling of a JSON body, to sign and to check a signed-only envelope.

    Sorted keys, no whitespace, UTF-8 (only control characters, ``"`` and ``\\`` are
    escaped), integers only. Floats are refused: they have no portable spelling.
    """
    _refuse_floats(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError(f"{value!r}: canonical JSON here has integers only")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


# --- public keys ------------------------------------------------------------------------------


def _decode_key(value: object, what: str) -> bytes:
    try:
        raw = b64decode(value)  # type: ignore[arg-type]  # checked inside
    except ValueError as err:
        raise UnknownKey(f"{what} {value!r} is not a key: expected 43 characters of base64url") from err
    if len(raw) != _KEY_BYTES:
        raise UnknownKey(f"{what} {value!r} is {len(raw)} bytes; expected {_KEY_BYTES}")
    return raw


@dataclass(frozen=True, slots=True)
class PublicKeys:
    """An entity's public keys, each base64url without padding (43 characters)."""

    sign: str
    box: str

    def __post_init__(self) -> None:
        _decode_key(self.sign, "signing key")
        _decode_key(self.box, "box key")

    @classmethod
    def from_dict(cls, keys: Mapping[str, str]) -> PublicKeys:
        """From a manifest's ``keys`` object: ``{"sign": …, "box": …}``; raises :class:`UnknownKey`."""
        missing = [name for name in ("sign", "box") if name not in keys]
        if missing:
            raise UnknownKey(f"keys {dict(keys)!r} lack {', '.join(missing)}; expected 'sign' and 'box'")
        return cls(sign=keys["sign"], box=keys["box"])

    def as_dict(self) -> dict[str, str]:
        return {"box": self.box, "sign": self.sign}

    def fingerprint(self, groups: int = 5) -> str:
        """``3F2A-9C1B-77D0-1E4B-A0C2``: 16 bits per group, for people to compare."""
        if not 1 <= groups <= 16:
            raise ValueError(f"groups={groups}: expected 1 to 16")
        digest = (
            hashlib.sha256(_FINGERPRINT_CONTEXT + b64decode(self.sign) + b64decode(self.box))
            .hexdigest()
            .upper()
        )
        return "-".join(digest[i : i + 4] for i in range(0, 4 * groups, 4))


def _verify_key(sender_sign: object, envelope_id: object) -> nacl.signing.VerifyKey:
    try:
        return nacl.signing.VerifyKey(_decode_key(sender_sign, "sender signing key"))
    except UnknownKey as err:
        raise UnknownKey(f"envelope {envelope_id!r}: {err}", envelope_id) from None


# --- identity and key file --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _KeyPairs:
    sign: nacl.signing.SigningKey
    box: nacl.public.PrivateKey
    created_at: int

    @classmethod
    def generate(cls) -> _KeyPairs:
        return cls(nacl.signing.SigningKey.generate(), nacl.public.PrivateKey.generate(), now_ms())

    def public(self) -> PublicKeys:
        return PublicKeys(
            sign=b64encode(bytes(self.sign.verify_key)), box=b64encode(bytes(self.box.public_key))
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "sign_seed": b64encode(bytes(self.sign)),
            "box_secret": b64encode(bytes(self.box)),
            "public": self.public().as_dict(),
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: object, path: Path, where: str) -> _KeyPairs:
        if not isinstance(data, dict):
            raise KeyFileError(f"key file {path}: {where} is not an object")
        try:
            pairs = cls(
                nacl.signing.SigningKey(b64decode(data["sign_seed"])),
                nacl.public.PrivateKey(b64decode(data["box_secret"])),
                int(data.get("created_at", 0)),
            )
        except (KeyError, TypeError, ValueError, nacl.exceptions.CryptoError) as err:
            raise KeyFileError(
                f"key file {path}: {where} is corrupt ({type(err).__name__}: {err});"
                " expected base64url 'sign_seed' and 'box_secret' of 32 bytes"
            ) from err
        stated = data.get("public")
        if stated is not None and stated != pairs.public().as_dict():
            raise KeyFileError(
                f"key file {path}: {where}.public does not match its secret keys; the file is corrupt"
            )
        return pairs


class Identity:
    """A hub's or a brand's key pairs: Ed25519 to sign, Curve25519 to open sealed bodies.

    ``previous`` holds the pairs replaced by the last :meth:`rotate`, kept so that
    bodies sealed to the old box key still open.
    """

    __slots__ = ("_current", "_previous")

    def __init__(self, current: _KeyPairs, previous: _KeyPairs | None = None) -> None:
        self._current = current
        self._previous = previous

    def __repr__(self) -> str:
        return f"Identity({self.public().fingerprint()})"

    # construction

    @classmethod
    def generate(cls) -> Identity:
        """A fresh identity in memory only."""
        return cls(_KeyPairs.generate())

    @classmethod
    def from_secrets(cls, sign_seed: bytes, box_secret: bytes) -> Identity:
        """From 32-byte secrets (test vectors, or keys kept in a secret store)."""
        return cls(_KeyPairs(nacl.signing.SigningKey(sign_seed), nacl.public.PrivateKey(box_secret), 0))

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a key file; :class:`KeyFileError` if it is missing, unsafe or corrupt."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as err:
            raise KeyFileError(f"key file {path} does not exist") from err
        except OSError as err:
            raise KeyFileError(f"key file {path} cannot be opened: {err.strerror}") from err
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"key file {path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077 and os.name != "nt":  # Windows has no such bits: its ACLs decide
                raise KeyFileError(
                    f"key file {path} has mode {mode:04o}: group or others can access it;"
                    f" expected 0600 (fix it with: chmod 600 {path})"
                )
            raw = file.read()
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise KeyFileError(f"key file {path} is not JSON: {err}") from err
        if not isinstance(data, dict) or data.get("format") != KEY_FILE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise KeyFileError(f"key file {path} has format {found!r}; expected {KEY_FILE_FORMAT!r}")
        current = _KeyPairs.from_json(data.get("current"), path, "current")
        previous_data = data.get("previous")
        previous = None if previous_data is None else _KeyPairs.from_json(previous_data, path, "previous")
        return cls(current, previous)

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        """Load ``path``, or create it (mode 0600, parent 0700) with fresh keys.

        Creation is atomic: the file appears complete or not at all, and when two
        processes race, both end up with the one identity that won.
        """
        path = Path(path)
        if path.exists():
            return cls.load(path)
        identity = cls.generate()
        try:
            _write_key_file(path, identity._to_json(), replace=False)
        except FileExistsError:
            return cls.load(path)
        return identity

    @classmethod
    def rotate(cls, path: Path) -> Identity:
        """Replace the key file's keys with fresh ones, keeping the current ones as ``previous``.

        Returns the new identity; a process holding the old one must reload. The
        keys that were ``previous`` before this call are forgotten.
        """
        path = Path(path)
        old = cls.load(path)
        new = cls(_KeyPairs.generate(), old._current)
        _write_key_file(path, new._to_json(), replace=True)
        return new

    def _to_json(self) -> dict[str, Any]:
        return {
            "format": KEY_FILE_FORMAT,
            "current": self._current.to_json(),
            "previous": None if self._previous is None else self._previous.to_json(),
        }

    # public side

    def public(self) -> PublicKeys:
        return self._current.public()

    def previous_public(self) -> PublicKeys | None:
        return None if self._previous is None else self._previous.public()

    def rotation_proof(self) -> str:
        """The current public keys signed by the previous signing key (base64url).

        Deterministic (Ed25519), so it can be recomputed as long as ``previous`` is kept.
        """
        if self._previous is None:
            raise ValueError("this identity has no previous keys: rotate it first")
        message = _rotation_message(self._previous.public(), self.public())
        return b64encode(self._previous.sign.sign(message).signature)

    # private side, for this module

    def _sign(self, message: bytes) -> bytes:
        return bytes(self._current.sign.sign(message).signature)

    def _box_keys(self) -> list[nacl.public.PrivateKey]:
        keys = [self._current.box]
        if self._previous is not None:
            keys.append(self._previous.box)
        return keys


def _write_key_file(path: Path, content: dict[str, Any], *, replace: bool) -> None:
    """Write ``content`` to ``path`` as a complete 0600 file, atomically, and fsync it.

    The bytes go to a temporary file in the same directory (``O_CREAT|O_EXCL``,
    0600), are fsynced, then become ``path``: by ``os.replace`` to rotate, and by
    ``os.link`` to create (which fails if ``path`` appeared meanwhile). On a file
    system without hard links, creation falls back to writing ``path`` itself with
    ``O_CREAT|O_EXCL``. Last, the directory is fsynced so the new name survives a
    power cut.
    """
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(parent, 0o700)  # whatever the umask did
    data = json.dumps(content, indent=2, sort_keys=True).encode() + b"\n"
    tmp = parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        _create_0600(tmp, data)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # FileExistsError if another process created it first
            except FileExistsError:
                raise
            except OSError:  # no hard links here (some FUSE, SMB or FAT mounts)
                _create_0600(path, data)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if os.name != "nt":
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _create_0600(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o600)
    try:
        if os.name != "nt":
            os.fchmod(fd, 0o600)  # whatever the umask did
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _rotation_message(old: PublicKeys, new: PublicKeys) -> bytes:
    return _lp(_ROTATION_CONTEXT) + b"".join(
        _lp(b64decode(key)) for key in (old.sign, old.box, new.sign, new.box)
    )


def verify_rotation(old: PublicKeys, new: PublicKeys, proof: str) -> bool:
    """Whether ``proof`` is ``new`` signed by ``old``'s signing key. Never raises on bad input."""
    try:
        signature = b64decode(proof)
        if len(signature) != _SIG_BYTES:
            return False
        nacl.signing.VerifyKey(b64decode(old.sign)).verify(_rotation_message(old, new), signature)
    except (ValueError, TypeError, AttributeError, nacl.exceptions.CryptoError):
        return False
    return True


# --- header and signature input ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The signed envelope fields: everything but ``body``, ``sealed`` and ``sig``."""

    v: int
    id: str
    type: str
    sender: str
    ts: int
    recipient: str | None = None
    conversation: str | None = None
    ref: str | None = None

    @classmethod
    def of(cls, envelope: Envelope) -> Header:
        """The header of a decoded :class:`~hub.protocol.Envelope`."""
        return cls(
            v=envelope.v,
            id=envelope.id,
            type=envelope.type,
            sender=envelope.sender,
            ts=envelope.ts,
            recipient=envelope.recipient,
            conversation=envelope.conversation,
            ref=envelope.ref,
        )

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Header:
        """The header of a raw JSON envelope (a dict), with absent optional fields as ``None``."""
        return cls(
            v=raw.get("v"),  # type: ignore[arg-type]  # checked when it is encoded
            id=raw.get("id"),  # type: ignore[arg-type]
            type=raw.get("type"),  # type: ignore[arg-type]
            sender=raw.get("sender"),  # type: ignore[arg-type]
            ts=raw.get("ts"),  # type: ignore[arg-type]
            recipient=raw.get("recipient"),
            conversation=raw.get("conversation"),
            ref=raw.get("ref"),
        )


class _Unencodable(ValueError):
    pass


def _u64(name: str, value: object) -> bytes:
    if type(value) is not int or not 0 <= value < _U64_LIMIT:
        raise _Unencodable(f"{name} {value!r} is not an integer from 0 to 2**63-1")
    return struct.pack(">Q", value)


def _text(name: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise _Unencodable(f"{name} {value!r} is not a string")
    try:
        return _lp(value.encode("utf-8"))
    except UnicodeEncodeError as err:
        raise _Unencodable(f"{name} {value!r} is not valid Unicode: {err.reason}") from err


def _optional(name: str, value: object) -> bytes:
    return b"\x00" if value is None else b"\x01" + _text(name, value)


def signature_input(header: Header, mode: Mode, payload: bytes) -> bytes:
    """The exact bytes a sender signs (see the module docstring); ``ValueError`` if unencodable."""
    if mode not in ("sealed", "signed"):
        raise _Unencodable(f"mode {mode!r}: expected 'sealed' or 'signed'")
    if not isinstance(payload, bytes):
        raise _Unencodable(f"payload is {type(payload).__name__}; expected bytes")
    return b"".join(
        (
            _lp(_SIG_CONTEXT),
            _lp(mode.encode("ascii")),
            _u64("v", header.v),
            _text("id", header.id),
            _text("type", header.type),
            _text("sender", header.sender),
            _optional("recipient", header.recipient),
            _optional("conversation", header.conversation),
            _optional("ref", header.ref),
            _u64("ts", header.ts),
            _lp(payload),
        )
    )


def _sender_input(header: Header, mode: Mode, payload: bytes) -> bytes:
    """:func:`signature_input` for a sender: an unencodable header is the caller's bug."""
    try:
        return signature_input(header, mode, payload)
    except _Unencodable as err:
        raise ValueError(f"envelope {header.id!r}: cannot sign its header: {err}") from err


# --- seal, sign, open, verify -----------------------------------------------------------------


def seal(body_json: bytes, header: Header, sender: Identity, recipient_box: str) -> tuple[str, str]:
    """Seal ``body_json`` for ``recipient_box`` and sign it with the header: ``(sealed, sig)``.

    Raises :class:`UnknownKey` for a malformed or unusable recipient key, and
    ``ValueError`` for a header that cannot be encoded (see :func:`signature_input`).
    """
    if not isinstance(body_json, bytes):
        raise TypeError(f"body_json is {type(body_json).__name__}; expected bytes")
    try:
        box_key = nacl.public.PublicKey(_decode_key(recipient_box, "recipient box key"))
        ciphertext = bytes(nacl.public.SealedBox(box_key).encrypt(body_json))
    except UnknownKey as err:
        raise UnknownKey(f"envelope {header.id!r}: {err}", header.id) from None
    except nacl.exceptions.CryptoError as err:
        raise UnknownKey(
            f"envelope {header.id!r}: cannot seal to box key {recipient_box!r}: {err}", header.id
        ) from err
    signature = sender._sign(_sender_input(header, "sealed", ciphertext))
    return b64encode(ciphertext), b64encode(signature)


def sign_only(body_json: bytes, header: Header, sender: Identity) -> str:
    """Sign an envelope that is not sealed (presence): the header plus ``body_json``.

    The receiver must rebuild ``body_json`` byte for byte: use :func:`canonical_json`.
    """
    if not isinstance(body_json, bytes):
        raise TypeError(f"body_json is {type(body_json).__name__}; expected bytes")
    return b64encode(sender._sign(_sender_input(header, "signed", body_json)))


def _verify(sig: object, header: Header, mode: Mode, payload: bytes, sender_sign: object) -> None:
    envelope_id = getattr(header, "id", None)
    key = _verify_key(sender_sign, envelope_id)
    sender = getattr(header, "sender", None)
    expected = f"expected a {mode} envelope signed by {sender!r} with key {sender_sign!r}"
    try:
        message = signature_input(header, mode, payload)
    except _Unencodable as err:
        raise BadSignature(
            f"envelope {envelope_id!r}: header cannot be signed ({err}); {expected}", envelope_id
        ) from None
    try:
        signature = b64decode(sig)  # type: ignore[arg-type]  # checked inside
    except ValueError:
        raise BadSignature(
            f"envelope {envelope_id!r}: sig is not base64url; {expected}", envelope_id
        ) from None
    if len(signature) != _SIG_BYTES:
        raise BadSignature(
            f"envelope {envelope_id!r}: sig is {len(signature)} bytes, not {_SIG_BYTES}; {expected}",
            envelope_id,
        )
    try:
        key.verify(message, signature)
    except nacl.exceptions.CryptoError:
        raise BadSignature(
            f"envelope {envelope_id!r}: the signature does not verify; {expected}", envelope_id
        ) from None


def open_sealed(sealed: str, sig: str, header: Header, sender_sign: str, recipient: Identity) -> bytes:
    """Verify ``sig`` over the header and ciphertext, then open the body; return its bytes.

    Raises :class:`UnknownKey` (``sender_sign`` is not a key), :class:`BadSignature`
    (checked first: nothing is decrypted unless it passes), or :class:`CannotOpen`
    (signed correctly, but not sealed to our current or previous box key).
    """
    envelope_id = getattr(header, "id", None)
    try:
        ciphertext = b64decode(sealed)
    except ValueError:
        # Not even bytes: no signature can cover it. Verify anyway for the key check.
        _verify_key(sender_sign, envelope_id)
        raise BadSignature(
            f"envelope {envelope_id!r}: sealed is not base64url, so no signature can cover it;"
            f" expected a body sealed and signed by {getattr(header, 'sender', None)!r}",
            envelope_id,
        ) from None
    _verify(sig, header, "sealed", ciphertext, sender_sign)
    keys = recipient._box_keys()
    if len(ciphertext) >= _SEAL_OVERHEAD:
        for key in keys:
            try:
                return bytes(nacl.public.SealedBox(key).decrypt(ciphertext))
            except nacl.exceptions.CryptoError:
                continue
    tried = [b64encode(bytes(key.public_key)) for key in keys]
    raise CannotOpen(
        f"envelope {envelope_id!r}: the sealed body does not open; expected a body sealed to box key"
        f" {' or previous '.join(tried)}",
        envelope_id,
    )


def verify_signed(sig: str, header: Header, body_json: bytes, sender_sign: str) -> None:
    """Check a signed-only envelope; :class:`BadSignature` or :class:`UnknownKey` if it fails."""
    if not isinstance(body_json, bytes):
        raise BadSignature(
            f"envelope {getattr(header, 'id', None)!r}: body is {type(body_json).__name__}, not bytes",
            getattr(header, "id", None),
        )
    _verify(sig, header, "signed", body_json, sender_sign)


# --- replay guard -----------------------------------------------------------------------------


_GUARD_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_envelopes (id TEXT PRIMARY KEY, ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_envelopes_ts ON seen_envelopes(ts);
"""


class ReplayGuard:
    """Refuse envelopes outside a time window; remember the ids accepted inside it.

    Use it after the signature is verified:

    1. ``seen(id)``: a duplicate; re-acknowledge it and stop (at-least-once delivery);
    2. ``check(header)``: :class:`ExpiredEnvelope` if ``ts`` is older than
       ``window_ms`` or more than ``future_skew_ms`` ahead;
    3. persist the envelope and ``remember(id, ts)`` in the same transaction, then
       acknowledge.

    ``prune()`` deletes ids whose ``ts`` has left the window: any copy of them
    would now be refused by ``check`` anyway.

    ``remember`` and ``prune`` join the caller's open transaction if there is one,
    and commit only a transaction they began themselves.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        window_ms: int = DEFAULT_WINDOW_MS,
        clock: Callable[[], int] = now_ms,
        *,
        future_skew_ms: int = DEFAULT_FUTURE_SKEW_MS,
    ) -> None:
        if window_ms <= 0 or future_skew_ms < 0:
            raise ValueError(f"window_ms={window_ms}, future_skew_ms={future_skew_ms}: expected > 0 and >= 0")
        self.conn = conn
        self.window_ms = window_ms
        self.future_skew_ms = future_skew_ms
        self.clock = clock
        for statement in _GUARD_SCHEMA.split(";"):  # not executescript: it would commit the caller's work
            if statement.strip():
                conn.execute(statement)

    def check(self, header: Header, *, allow_seen: bool = True) -> None:
        """Raise :class:`ExpiredEnvelope` if ``header.ts`` is outside the window.

        With ``allow_seen=False``, also raise :class:`ReplayedEnvelope` for an id
        already remembered (for kinds of envelope that are never re-sent).
        """
        envelope_id, ts = header.id, header.ts
        if type(ts) is not int:
            raise ExpiredEnvelope(f"envelope {envelope_id!r}: ts {ts!r} is not an integer", envelope_id)
        now = self.clock()
        if ts - now > self.future_skew_ms:
            raise ExpiredEnvelope(
                f"envelope {envelope_id!r} is from the future: ts {ts} is {ts - now} ms ahead of our clock"
                f" ({now}); expected at most {self.future_skew_ms} ms ahead",
                envelope_id,
                future=True,
            )
        if now - ts > self.window_ms:
            raise ExpiredEnvelope(
                f"envelope {envelope_id!r} has expired: ts {ts} is {now - ts} ms old;"
                f" expected at most {self.window_ms} ms",
                envelope_id,
            )
        if not allow_seen and self.seen(envelope_id):
            raise ReplayedEnvelope(
                f"envelope {envelope_id!r} was already accepted; expected a new id", envelope_id
            )

    def seen(self, envelope_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM seen_envelopes WHERE id = ?", (envelope_id,)).fetchone()
        return row is not None

    def remember(self, envelope_id: str, ts: int) -> None:
        """Record an accepted id; a later copy keeps the largest ``ts`` seen for it."""
        self._write(
            "INSERT INTO seen_envelopes (id, ts) VALUES (?, ?)"
            " ON CONFLICT(id) DO UPDATE SET ts = MAX(ts, excluded.ts)",
            (envelope_id, ts),
        )

    def prune(self) -> int:
        """Delete the ids that left the window; return how many."""
        cutoff = self.clock() - self.window_ms
        return self._write("DELETE FROM seen_envelopes WHERE ts < ?", (cutoff,))

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        owned = not self.conn.in_transaction
        count = self.conn.execute(sql, params).rowcount
        if owned and self.conn.in_transaction:  # a legacy-mode connection opened one for us
            self.conn.commit()
        return count
