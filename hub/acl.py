"""Broker identities and ACLs: Mosquitto files generated from a small network description.

Every hub and every brand gets its own broker account, and each account may
touch exactly the topics of ``docs/protocol.md`` §2 that belong to it:

- the MQTT username of hub ``h`` is ``hub-h`` and that of brand ``b`` is
  ``brand-b``. The prefix keeps a hub and a brand with the same id apart
  (both would otherwise be one broker user with the union of both rights);
- a hub may write ``foyer/v1/brand/<b>/from/<its id>`` and read
  ``foyer/v1/hub/<its id>/from/<b>`` and ``foyer/v1/brand/<b>/status`` only for
  the brands ``b`` it opted into, and read every ``foyer/v1/brand/+/manifest``
  (the public directory);
- a brand may read ``foyer/v1/brand/<its id>/from/+`` (its inbox), write
  ``foyer/v1/hub/<h>/from/<its id>`` only for the hubs ``h`` that opted into it,
  and read and write its own ``status`` and ``manifest``.

The ACL file has one explicit ``user`` block per account and no ``pattern``
line: a pattern applies to *every* user, so ``pattern write
foyer/v1/brand/+/from/%u`` would let brand ``x`` write to other brands as if it
were a hub called ``x``.

Generated files (:func:`write_mosquitto_config`):

``mosquitto.conf``
    ``allow_anonymous false``, ``password_file``, ``acl_file``,
    ``use_username_as_clientid true``, ``set_tcp_nodelay true``,
    ``max_packet_size 131072`` and one listener (TLS when certificate files are
    given). ``use_username_as_clientid`` makes the broker replace whatever
    client id a client sends with its (authenticated) username, so nobody can
    take over another account's session, or disconnect it in a loop, by
    reusing its client id. The cost: one connection per account. A second
    process of the same brand or hub takes the first one's session over (see
    protocol.md §12; shared-subscription workers need per-worker accounts,
    which this version does not generate).
``passwd``
    Mosquitto 2 password file, hashed here in pure Python in Mosquitto's own
    ``$7$`` format (PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt, 64-byte
    hash, both base64), so no ``mosquitto_passwd`` binary is needed.
``acl``
    The per-user blocks above.
``secrets.json``
    Mode 0600: ``{"<username>": "<password>", ...}``, the generated random
    passwords to hand to each hub (``--broker mqtt://hub-h:PASSWORD@host:port``)
    and brand. Regenerating keeps the passwords of accounts that already
    exist in it (connected clients keep working); ``rotate=True`` /
    ``--rotate`` draws new ones for everybody.

The network description, ``network.json``::

    {
      "hubs": {
        "home1": {"opt_in": ["alpha"]},
        "home2": {"opt_in": ["beta"]}
      },
      "brands": ["alpha", "beta"]
    }

``hubs`` maps each hub id to the brands it opted into; ``brands`` lists every
brand that gets an account (a brand nobody opted into can still publish its
manifest and presence, and read its empty inbox). Ids follow the protocol
(``^[a-z0-9][a-z0-9_-]{1,62}$``); an opt-in must name a listed brand.

A single home can instead describe itself from its own SQLite database
(:func:`network_from_hub_db`): itself as the only hub, every brand it knows
(the ``brands`` table) as brands, and its ``opted_in`` ones as opt-ins.

Command line (:func:`main`; meant to be wired in as ``foyer broker config``)::

    foyer broker config --out DIR (--network network.json | --hub-db hub.db [--hub-id ID])
                        [--port N] [--host ADDR] [--user NAME] [--rotate]
                        [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]

Then run ``mosquitto -c DIR/mosquitto.conf``. Mosquitto started as root drops
to the ``mosquitto`` user unless the config says otherwise (``--user``); the
files are written 0600 for the user who ran the command, so give them to the
user the broker runs as.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hub.protocol import check_id

__all__ = [
    "HubEntry",
    "Network",
    "NetworkError",
    "TlsFiles",
    "acl_rules",
    "brand_username",
    "hash_password",
    "hub_username",
    "load_network",
    "main",
    "network_from_hub_db",
    "render_acl",
    "render_mosquitto_conf",
    "render_passwd",
    "verify_password",
    "write_mosquitto_config",
]

Access = Literal["read", "write", "readwrite"]


class NetworkError(ValueError):
    """A network description (or a hub database, or a command line) that cannot be used."""


PBKDF2_ITERATIONS = 101
"""What ``mosquitto_passwd`` 2.0 uses (``$7$101$...``)."""
SALT_BYTES = 12
HASH_BYTES = 64
MAX_PACKET_SIZE = 131072
"""Twice the 64 KiB payload limit: room for the topic and headers, nothing bigger."""


# --- the network --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubEntry:
    """One home: the brands it opted into."""

    opt_in: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Network:
    """Who is on the broker: hubs (with their opt-ins) and brands. Validated when built."""

    hubs: dict[str, HubEntry] = field(default_factory=dict)
    brands: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for brand_id in self.brands:
            check_id("brand", brand_id)
        if len(set(self.brands)) != len(self.brands):
            raise NetworkError(f"brands are listed twice: {sorted(self.brands)}")
        known = set(self.brands)
        for hub_id, entry in self.hubs.items():
            check_id("hub", hub_id)
            for brand_id in entry.opt_in:
                check_id("brand", brand_id)
                if brand_id not in known:
                    raise NetworkError(f"hub {hub_id!r} opted into brand {brand_id!r}, which is not listed")

    def opted_in(self, brand_id: str) -> list[str]:
        """The hubs that opted into ``brand_id``, sorted."""
        return sorted(h for h, entry in self.hubs.items() if brand_id in entry.opt_in)

    @classmethod
    def from_dict(cls, data: object, source: str = "network") -> Network:
        """Build from the ``network.json`` shape; ``ValueError`` naming the problem otherwise."""
        if not isinstance(data, dict) or set(data) - {"hubs", "brands"}:
            raise NetworkError(f"{source}: expected an object with only 'hubs' and 'brands'")
        hubs_raw = data.get("hubs", {})
        brands_raw = data.get("brands", [])
        if not isinstance(hubs_raw, dict):
            raise NetworkError(f"{source}: 'hubs' must be an object of hub id -> {{\"opt_in\": [...]}}")
        if not isinstance(brands_raw, list) or not all(isinstance(b, str) for b in brands_raw):
            raise NetworkError(f"{source}: 'brands' must be a list of brand ids")
        hubs: dict[str, HubEntry] = {}
        for hub_id, entry in hubs_raw.items():
            opt_in = entry.get("opt_in", []) if isinstance(entry, dict) else None
            if (
                not isinstance(entry, dict)
                or set(entry) - {"opt_in"}
                or not isinstance(opt_in, list)
                or not all(isinstance(b, str) for b in opt_in)
            ):
                raise NetworkError(f'{source}: hub {hub_id!r} must be {{"opt_in": [brand ids]}}')
            hubs[hub_id] = HubEntry(opt_in=list(opt_in))
        try:
            return cls(hubs=hubs, brands=list(brands_raw))
        except ValueError as err:
            raise NetworkError(f"{source}: {err}") from err


def load_network(path: Path) -> Network:
    """Read a ``network.json`` file (format in this module's docstring)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise NetworkError(f"{path}: not JSON: {err}") from err
    return Network.from_dict(data, str(path))


def network_from_hub_db(db_path: Path | str, hub_id: str | None = None) -> Network:
    """The network as one home sees it, from its SQLite database (opened read-only).

    ``hub_id`` defaults to the id the hub stored in its ``meta`` table; if both
    are known they must agree, so a config is never generated for the wrong home.
    """
    path = Path(db_path)
    if not path.is_file():
        raise NetworkError(f"{path}: no such hub database")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        brand_rows = conn.execute("SELECT id, opted_in FROM brands ORDER BY id").fetchall()
        stored: str | None = None
        with contextlib.suppress(sqlite3.OperationalError):  # an older database without meta
            row = conn.execute("SELECT value FROM meta WHERE key = 'hub_id'").fetchone()
            stored = row[0] if row else None
    except sqlite3.DatabaseError as err:
        raise NetworkError(f"{path}: not a Foyer hub database: {err}") from err
    finally:
        conn.close()
    if hub_id is not None and stored is not None and hub_id != stored:
        raise NetworkError(f"{path} belongs to hub {stored!r}, not {hub_id!r}")
    chosen = hub_id or stored
    if chosen is None:
        raise NetworkError(f"{path} does not record its hub id: pass it explicitly")
    brands = [str(r[0]) for r in brand_rows]
    opt_in = [str(r[0]) for r in brand_rows if r[1]]
    return Network(hubs={chosen: HubEntry(opt_in=opt_in)}, brands=brands)


# --- identities and rules -----------------------------------------------------------------------


def hub_username(hub_id: str) -> str:
    return f"hub-{check_id('hub', hub_id)}"


def brand_username(brand_id: str) -> str:
    return f"brand-{check_id('brand', brand_id)}"


def acl_rules(network: Network) -> dict[str, list[tuple[Access, str]]]:
    """Every account's rights as ``username -> [(access, topic filter)]``, in a stable order."""
    rules: dict[str, list[tuple[Access, str]]] = {}
    for hub_id in sorted(network.hubs):
        mine: list[tuple[Access, str]] = []
        for brand_id in sorted(set(network.hubs[hub_id].opt_in)):
            mine += [
                ("write", f"foyer/v1/brand/{brand_id}/from/{hub_id}"),
                ("read", f"foyer/v1/hub/{hub_id}/from/{brand_id}"),
                ("read", f"foyer/v1/brand/{brand_id}/status"),
            ]
        mine.append(("read", "foyer/v1/brand/+/manifest"))
        rules[hub_username(hub_id)] = mine
    for brand_id in sorted(network.brands):
        mine = [("read", f"foyer/v1/brand/{brand_id}/from/+")]
        mine += [("write", f"foyer/v1/hub/{hub_id}/from/{brand_id}") for hub_id in network.opted_in(brand_id)]
        mine += [
            ("readwrite", f"foyer/v1/brand/{brand_id}/status"),
            ("readwrite", f"foyer/v1/brand/{brand_id}/manifest"),
        ]
        rules[brand_username(brand_id)] = mine
    return rules


def render_acl(network: Network) -> str:
    """Mosquitto ``acl_file`` text: one ``user`` block per account, no ``pattern`` lines."""
    lines = [
        "# Generated by Foyer (hub/acl.py): one block per account; no 'pattern' lines on purpose.",
        "# Anything not listed is denied.",
    ]
    for username, rules in acl_rules(network).items():
        lines += ["", f"user {username}"]
        lines += [f"topic {access} {topic}" for access, topic in rules]
    return "\n".join(lines) + "\n"


# --- passwords ----------------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto 2's ``$7$<iterations>$<b64 salt>$<b64 hash>`` (PBKDF2-HMAC-SHA512)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (ours or ``mosquitto_passwd``'s)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7" or not parts[2].isdigit():
        raise ValueError("not a Mosquitto $7$ password hash")
    salt, expected = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), len(expected))
    return hmac.compare_digest(digest, expected)


def render_passwd(passwords: Mapping[str, str]) -> str:
    """Mosquitto ``password_file`` text for ``username -> clear password``."""
    for username in passwords:
        if not username or any(c in username for c in ":\n\r"):
            raise ValueError(f"username {username!r} cannot go in a password file")
    return "".join(f"{u}:{hash_password(p)}\n" for u, p in sorted(passwords.items()))


# --- mosquitto.conf -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A TLS listener: the server's certificate and key; ``cafile`` checks client certificates."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None


def render_mosquitto_conf(
    *,
    passwd: Path,
    acl: Path,
    listener_port: int,
    tls: TlsFiles | None = None,
    host: str | None = None,
    user: str | None = None,
) -> str:
    """The ``mosquitto.conf`` text (global settings, then one listener)."""
    lines = ["# Generated by Foyer (hub/acl.py)."]
    if user is not None:
        lines.append(f"user {user}")
    lines += [
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {passwd}",
        f"acl_file {acl}",
        "# Nagle off: otherwise each QoS 1 hop can stall ~40 ms.",
        "set_tcp_nodelay true",
        "# The payload limit is 64 KiB; a bigger packet disconnects its sender.",
        f"max_packet_size {MAX_PACKET_SIZE}",
        "",
        # Listener options go after their 'listener' line: before any, Mosquitto would apply
        # them to a default listener that it then opens on port 1883, besides this one.
        f"listener {listener_port}{f' {host}' if host else ''}",
        "# The broker replaces the client id with the authenticated username: nobody can",
        "# take over (or keep disconnecting) another account's session by reusing its client id.",
        "use_username_as_clientid true",
    ]
    if tls is not None:
        if tls.cafile is not None:
            lines.append(f"cafile {Path(tls.cafile).resolve()}")
        lines += [f"certfile {Path(tls.certfile).resolve()}", f"keyfile {Path(tls.keyfile).resolve()}"]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Atomically replace ``path`` with a 0600 file holding ``text``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _existing_secrets(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: expected an object of username -> password")
    return {str(k): v for k, v in data.items()}


def write_mosquitto_config(
    network: Network,
    out_dir: Path,
    listener_port: int,
    tls: TlsFiles | None = None,
    *,
    host: str | None = None,
    user: str | None = None,
    rotate: bool = False,
) -> dict[str, Path]:
    """Write ``mosquitto.conf``, ``passwd``, ``acl`` and ``secrets.json`` (all 0600) into ``out_dir``.

    Returns ``{"conf": ..., "passwd": ..., "acl": ..., "secrets": ...}``. Passwords
    already in ``secrets.json`` are kept for the accounts that remain (unless
    ``rotate``); accounts no longer in the network lose theirs.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "conf": out_dir / "mosquitto.conf",
        "passwd": out_dir / "passwd",
        "acl": out_dir / "acl",
        "secrets": out_dir / "secrets.json",
    }
    old = {} if rotate else _existing_secrets(paths["secrets"])
    usernames = list(acl_rules(network))
    passwords = {u: old.get(u) or secrets.token_urlsafe(24) for u in usernames}
    _write_private(paths["secrets"], json.dumps(passwords, indent=2, sort_keys=True) + "\n")
    _write_private(paths["passwd"], render_passwd(passwords))
    _write_private(paths["acl"], render_acl(network))
    conf = render_mosquitto_conf(
        passwd=paths["passwd"], acl=paths["acl"], listener_port=listener_port, tls=tls, host=host, user=user
    )
    _write_private(paths["conf"], conf)
    return paths


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``foyer broker config`` (for wiring into another parser)."""
    parser.add_argument("--out", required=True, type=Path, help="directory for the generated files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--network", type=Path, help="network.json: hubs, their opt-ins, brands")
    source.add_argument("--hub-db", type=Path, help="a hub's SQLite database: this home alone")
    parser.add_argument("--hub-id", help="with --hub-db: the home's id (default: the one it stored)")
    parser.add_argument("--port", type=int, help="listener port (default 1883, or 8883 with TLS)")
    parser.add_argument("--host", help="listener address (default: every interface)")
    parser.add_argument("--user", help="system user Mosquitto runs as when started as root")
    parser.add_argument("--rotate", action="store_true", help="new passwords for every account")
    parser.add_argument("--tls-ca", type=Path, help="CA file that checks client certificates")
    parser.add_argument("--tls-cert", type=Path, help="server certificate: makes the listener TLS")
    parser.add_argument("--tls-key", type=Path, help="server private key (with --tls-cert)")


def _configure(args: argparse.Namespace) -> tuple[Network, dict[str, Path]]:
    if args.hub_id is not None and args.hub_db is None:
        raise NetworkError("--hub-id goes with --hub-db")
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_ca and not args.tls_cert):
        raise NetworkError("TLS needs --tls-cert and --tls-key together (--tls-ca is optional)")
    tls = None
    if args.tls_cert is not None:
        for option, path in (
            ("--tls-cert", args.tls_cert),
            ("--tls-key", args.tls_key),
            ("--tls-ca", args.tls_ca),
        ):
            if path is not None and not Path(path).is_file():
                raise NetworkError(f"{option} {path}: no such file")
        tls = TlsFiles(certfile=args.tls_cert, keyfile=args.tls_key, cafile=args.tls_ca)
    port = args.port if args.port is not None else (8883 if tls else 1883)
    if not 0 < port < 65536:
        raise NetworkError(f"--port {port} is not a TCP port")
    if args.network is not None:
        network = load_network(args.network)
    else:
        network = network_from_hub_db(args.hub_db, args.hub_id)
    paths = write_mosquitto_config(
        network, args.out, port, tls, host=args.host, user=args.user, rotate=args.rotate
    )
    return network, paths


def run(args: argparse.Namespace) -> int:
    """Carry out ``foyer broker config`` from parsed arguments; 0 on success, 2 on a bad input."""
    try:
        network, paths = _configure(args)
    except (ValueError, OSError) as err:
        print(f"foyer broker config: {err}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    print(f"{len(network.hubs)} hub(s), {len(network.brands)} brand(s); passwords in {paths['secrets']}")
    print(f"run: mosquitto -c {paths['conf']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``foyer broker config ...`` (``argv`` without the ``broker config`` words)."""
    parser = argparse.ArgumentParser(
        prog="foyer broker config",
        description="Generate Mosquitto accounts, ACLs and config for a Foyer network.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
