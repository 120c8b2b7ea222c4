"""The ``foyer`` command: ``demo``, ``hub``, ``broker``, ``brand run``, ``chat``, ``brands``, ``status``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8765"


def _tokens_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "foyer" / "tokens.json"


def load_token(url: str) -> str | None:
    """The device token for the hub at ``url``: ``FOYER_TOKEN``, else the one saved by ``foyer login``."""
    if os.environ.get("FOYER_TOKEN"):
        return os.environ["FOYER_TOKEN"]
    try:
        tokens: dict[str, str] = json.loads(_tokens_file().read_text())
    except (OSError, ValueError):
        return None
    return tokens.get(url.rstrip("/"))


def save_token(url: str, token: str) -> Path:
    """Remember a device token for ``url`` in a file only this user can read."""
    path = _tokens_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        tokens: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        tokens = {}
    tokens[url.rstrip("/")] = token
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(tokens, out, indent=1)
    path.with_suffix(".tmp").replace(path)
    return path


def _client(url: str) -> httpx.Client:
    token = load_token(url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, timeout=10, headers=headers)


def _fail(response: httpx.Response) -> int:
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    print(message, file=sys.stderr)
    if response.status_code == 401:
        print("pair this terminal first: foyer pair (on the hub), then foyer login CODE", file=sys.stderr)
    return 1


def _api(url: str, method: str, path: str) -> httpx.Response:
    """Call the hub as this terminal; on an error, print the hub's message and exit with 1."""
    with _client(url) as client:
        response = client.request(method, path)
    if response.is_error:
        raise SystemExit(_fail(response))
    return response


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _hub_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name in (
        "hub_id",
        "broker_url",
        "broker_ca",
        "broker_cert",
        "broker_key",
        "db_path",
        "data_dir",
        "db_sync",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "opt_in", None):
        overrides["auto_opt_in"] = args.opt_in
    return overrides


async def _serve(app: Any, host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        ws_ping_interval=20,
        ws_per_message_deflate=False,  # events are small: compressing costs more than it saves
        lifespan="on",
    )
    await uvicorn.Server(config).serve()


def cmd_hub(args: argparse.Namespace) -> int:
    from hub.api import create_app
    from hub.broker import free_port
    from hub.settings import get_settings

    settings = get_settings(**_hub_overrides(args))
    port = args.port if args.port is not None else settings.api_port
    if args.port is None:
        chosen = free_port(settings.api_host, preferred=port)
        if chosen != port:
            print(f"port {port} is busy: the hub listens on {chosen} instead", flush=True)
            port = chosen
    host = args.host or settings.api_host
    print(f"Foyer hub on http://{host}:{port} (API docs at /docs)", flush=True)
    asyncio.run(_serve(create_app(settings), host, port))
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from hub.broker import EmbeddedBroker, free_port

    if args.broker_command == "config":
        from hub.acl import run as write_config

        return write_config(args)
    secured = None
    if args.network and args.passwd:
        from hub.acl import load_network
        from hub.broker_acl import amqtt_config

        secured = amqtt_config(load_network(Path(args.network)), Path(args.passwd), args.host, args.port)
    elif not args.anonymous:
        print(
            "foyer broker: give --network and --passwd (from `foyer broker config`), or --anonymous"
            " for a throw-away test broker",
            file=sys.stderr,
        )
        return 2

    async def run() -> None:
        port = args.port if secured else free_port(args.host, preferred=args.port)
        async with EmbeddedBroker(args.host, port, secured=secured) as broker:
            mode = "accounts and ACLs" if secured else "ANONYMOUS (tests and demos only)"
            print(f"embedded broker ready on {broker.settings.url} — {mode}", flush=True)
            await asyncio.Event().wait()

    asyncio.run(run())
    return 0


def cmd_brand_run(args: argparse.Namespace) -> int:
    from brand_adapters.runner import run_adapter
    from hub.mqtt import parse_broker_url
    from hub.settings import default_data_dir

    broker = parse_broker_url(
        args.broker, ca_file=args.broker_ca, cert_file=args.broker_cert, key_file=args.broker_key
    )
    state = Path(args.state) if args.state else default_data_dir() / "brands" / f"{args.adapter}.db"
    if args.desk_port is not None and not args.desk_agents:
        print("foyer brand run: --desk-port needs --desk-agents FILE (see docs/desk.md)", file=sys.stderr)
        return 2
    agents = Path(args.desk_agents) if args.desk_agents else None
    asyncio.run(run_adapter(args.adapter, broker, state, desk_port=args.desk_port, desk_agents=agents))
    return 0


def cmd_brand_list(_: argparse.Namespace) -> int:
    from brand_adapters.registry import manifests

    for manifest in manifests():
        print(f"{manifest.id:16} {manifest.name:20} {manifest.description.fr}")
    return 0


def cmd_brands(args: argparse.Namespace) -> int:
    with _client(args.url) as client:
        if args.action in ("opt-in", "opt-out", "approve-keys"):
            if not args.brand:
                print(f"foyer brands {args.action} needs a brand id", file=sys.stderr)
                return 2
            response = client.post(f"/api/brands/{args.brand}/{args.action}")
            if response.is_error:
                return _fail(response)
        response = client.get("/api/brands")
        if response.is_error:
            return _fail(response)
        brands = response.json()
    for brand in brands:
        mark = "✔" if brand["opted_in"] else "·"
        presence = "en ligne" if brand["online"] else "hors ligne"
        keys = f"clés {brand['keys']}" if brand.get("keys") else ""
        print(f"{mark} {brand['id']:16} {brand['name']:20} {presence:10} {keys}".rstrip())
        if brand.get("pending_keys"):
            print(
                f"    ⚠ nouvelles clés annoncées {brand['pending_keys']} :"
                f" vérifiez-les auprès de la marque, puis foyer brands approve-keys {brand['id']}"
            )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args.url) as client:
        health = client.get("/api/health").json()
    for key, value in health.items():
        print(f"{key:18} {value}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from hub.chat import run_chat

    return asyncio.run(run_chat(args.url, brand=args.brand, token=load_token(args.url)))


def cmd_stats(args: argparse.Namespace) -> int:
    """How brands treat the household, as a table."""
    from rich.console import Console
    from rich.table import Table

    response = _api(args.url, "GET", "/api/stats")

    def seconds(ms: int | None) -> str:
        return "—" if ms is None else f"{ms / 1000:.1f} s"

    table = Table(title="Comment les marques nous traitent / How brands treat us")
    for column in (
        "marque",
        "conversations",
        "1re réponse",
        "délai humain",
        "durée",
        "satisfaction",
        "besoin d'un humain",
    ):
        table.add_column(column)
    for row in response.json():
        satisfaction = "—" if row["satisfaction"] is None else f"{row['satisfaction']}/5 ({row['ratings']})"
        table.add_row(
            row["name"],
            str(row["conversations"]),
            seconds(row["first_response_ms"]),
            seconds(row["time_to_human_ms"]),
            seconds(row["duration_ms"]),
            satisfaction,
            f"{row['needed_human'] * 100:.0f} %",
        )
    Console().print(table)
    return 0


def cmd_knows(args: argparse.Namespace) -> int:
    """What does this brand know about us: every datum disclosed, when and under which consent."""
    response = _api(args.url, "GET", f"/api/brands/{args.brand}/knows")
    data = response.json()
    if not data["entries"]:
        print(f"{args.brand} ne sait rien de vous (aucune donnée transmise) / knows nothing about you")
    for entry in data["entries"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["ts"] / 1000))
        value = entry["value"] if entry["value"] is not None else "(effacé / erased)"
        print(f"{when}  {entry['op']:8} {entry['scope']:15} {value}  [{entry['basis']}]")
    forget = data["forget"]
    if forget.get("request"):
        state = "oubliée" if forget.get("forgotten_at") else "demande d'oubli en cours"
        print(f"oubli / forget: {state}")
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    """Prove the ledger of disclosures is intact (its hash chain)."""
    response = _api(args.url, "GET", "/api/ledger/verify")
    result = response.json()
    if result["ok"]:
        print(f"registre intact / ledger intact ({result['checked']} entrées)")
        return 0
    print(f"REGISTRE ALTÉRÉ / LEDGER TAMPERED at entry {result['first_bad_seq']}: {result['reason']}")
    return 1


def cmd_export(args: argparse.Namespace) -> int:
    """Everything the hub holds for the household, as one JSON file."""
    response = _api(args.url, "GET", "/api/export")
    Path(args.file).write_bytes(response.content)
    print(f"export written to {args.file}")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase a brand here and ask it to forget the household (re-sent until it answers)."""
    _api(args.url, "POST", f"/api/brands/{args.brand}/erase")
    print(f"{args.brand}: effacée ici ; demande d'oubli envoyée / erased here; forget request sent")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """On the hub: show its key fingerprint, or rotate its keys (then restart the hub)."""
    from hub.crypto import Identity
    from hub.settings import get_settings

    settings = get_settings(**_hub_overrides(args))
    if args.action == "rotate":
        identity = Identity.rotate(settings.keys_path)
        print(f"nouvelles clés / new keys: {identity.public().fingerprint()}")
        print("Redémarrez le hub : les marques les accepteront grâce à la preuve signée par les anciennes.")
        print("Restart the hub: brands accept them through the proof signed by the old keys.")
    else:
        print(Identity.load_or_create(settings.keys_path).public().fingerprint())
    return 0


def cmd_pair(args: argparse.Namespace) -> int:
    """On the hub itself: print a one-time pairing code (whoever can read the database is the owner)."""
    from hub.settings import get_settings
    from hub.store import Store

    settings = get_settings(**_hub_overrides(args))
    with Store(settings.database) as store:
        code = store.devices.create_code(args.role)
    if args.quiet:
        print(code)
    else:
        role = "administrateur" if args.role == "admin" else "membre"
        print(f"Code d'appairage ({role}), valable 10 minutes : {code}")
        print(f"Pairing code ({args.role}), valid for 10 minutes: {code}")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    """Pair this terminal with a code the hub showed, and remember its token."""
    with httpx.Client(base_url=args.url, timeout=10) as client:
        response = client.post("/api/pair", json={"code": args.code, "name": args.name})
    if response.is_error:
        return _fail(response)
    body = response.json()
    path = save_token(args.url, body["token"])
    print(f"Appareil « {body['device']['name']} » appairé ({body['device']['role']}); jeton dans {path}")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    with _client(args.url) as client:
        if args.action == "revoke":
            response = client.delete(f"/api/devices/{args.device}")
            if response.is_error:
                return _fail(response)
        response = client.get("/api/devices")
        if response.is_error:
            return _fail(response)
    for device in response.json():
        state = "révoqué" if device["revoked_at"] else "actif"
        print(f"{device['id']}  {device['role']:6}  {state:8}  {device['name']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hub.demo import run_demo

    return asyncio.run(
        run_demo(
            port=args.port,
            broker_port=args.broker_port,
            data_dir=Path(args.data_dir) if args.data_dir else None,
        )
    )


def _add_server_commands(sub: Any) -> None:
    """What runs on the hub's machine: demo, hub, broker, brand adapters."""
    demo = sub.add_parser("demo", help="embedded broker + hub + demo brands, on one machine")
    demo.add_argument("--port", type=int, default=8765, help="HTTP port (another if busy)")
    demo.add_argument("--broker-port", type=int, default=1883, help="MQTT port (another if busy)")
    demo.add_argument("--data-dir", help="where the demo keeps its files (default: a fresh temp dir)")
    demo.set_defaults(func=cmd_demo)

    hub = sub.add_parser("hub", help="run the hub daemon")
    hub.add_argument("--broker", dest="broker_url", help="mqtt://user:pass@host:port; embedded if unset")
    hub.add_argument("--broker-ca", help="CA file for mqtts://")
    hub.add_argument("--broker-cert", help="client certificate for mqtts://")
    hub.add_argument("--broker-key", help="client key for mqtts://")
    hub.add_argument("--hub-id", help="this home's id on the network")
    hub.add_argument("--db", dest="db_path", help="SQLite file")
    hub.add_argument("--data-dir", help="directory for the hub's files")
    hub.add_argument("--db-sync", choices=["NORMAL", "FULL"], help="FULL survives power cuts")
    hub.add_argument("--host", help="HTTP address (default 127.0.0.1: loopback only)")
    hub.add_argument("--port", type=int, help="HTTP port (default 8765, another if busy)")
    hub.add_argument("--opt-in", action="append", help="opt into this brand at start (repeatable)")
    hub.set_defaults(func=cmd_hub)

    broker = sub.add_parser("broker", help="run the embedded MQTT broker alone, or write broker configs")
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--port", type=int, default=1883, help="another if busy (anonymous mode)")
    broker.add_argument("--network", help="network.json: hubs, opt-ins, brands (secured mode)")
    broker.add_argument("--passwd", help="the passwd file `foyer broker config` wrote (secured mode)")
    broker.add_argument("--anonymous", action="store_true", help="accept anyone: tests and demos only")
    broker.set_defaults(func=cmd_broker, broker_command=None)
    actions = broker.add_subparsers(dest="broker_command")
    config = actions.add_parser("config", help="write Mosquitto passwd/ACL/config for a network")
    from hub.acl import add_arguments

    add_arguments(config)

    brand = sub.add_parser("brand", help="brand adapters").add_subparsers(dest="brand_command", required=True)
    run = brand.add_parser("run", help="run a brand adapter as its own process")
    run.add_argument("adapter", help="adapter id (see `foyer brand list`)")
    run.add_argument("--broker", default=os.environ.get("FOYER_BROKER_URL", "mqtt://127.0.0.1:1883"))
    run.add_argument("--broker-ca")
    run.add_argument("--broker-cert")
    run.add_argument("--broker-key")
    run.add_argument("--state", help="the adapter's SQLite state file")
    run.add_argument("--desk-port", type=int, help="also serve the human desk on http://127.0.0.1:PORT/desk")
    run.add_argument("--desk-agents", help="the desk's agents file (JSON; see docs/desk.md)")
    run.set_defaults(func=cmd_brand_run)
    listing = brand.add_parser("list", help="registered brand adapters")
    listing.set_defaults(func=cmd_brand_list)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foyer", description="Foyer, the household brand hub.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_server_commands(sub)

    pair = sub.add_parser("pair", help="on the hub: show a one-time code to pair a new device")
    pair.add_argument("--role", choices=["member", "admin"], default="member")
    pair.add_argument("--db", dest="db_path", help="the hub's SQLite file")
    pair.add_argument("--data-dir", help="the hub's data directory")
    pair.add_argument("--quiet", action="store_true", help="print the code only")
    pair.set_defaults(func=cmd_pair)

    keys = sub.add_parser("keys", help="on the hub: its key fingerprint, or rotate its keys")
    keys.add_argument("action", nargs="?", default="show", choices=["show", "rotate"])
    keys.add_argument("--db", dest="db_path", help="the hub's SQLite file")
    keys.add_argument("--data-dir", help="the hub's data directory")
    keys.set_defaults(func=cmd_keys)

    for name, func, text in (
        ("chat", cmd_chat, "talk to your brands in the terminal"),
        ("brands", cmd_brands, "list brands, opt in or out"),
        ("status", cmd_status, "the hub's health and counters"),
        ("login", cmd_login, "pair this terminal with a code from the hub"),
        ("devices", cmd_devices, "paired devices; revoke one (admin)"),
        ("stats", cmd_stats, "how brands treat us: response times, humans, satisfaction"),
        ("knows", cmd_knows, "what a brand knows about us (the ledger)"),
        ("ledger", cmd_ledger, "verify the ledger of disclosures"),
        ("export", cmd_export, "export everything the hub holds, as JSON"),
        ("erase", cmd_erase, "erase a brand and ask it to forget us"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("--url", default=os.environ.get("FOYER_URL", DEFAULT_URL))
        command.set_defaults(func=func)
    sub.choices["chat"].add_argument("--brand", help="start talking to this brand")
    sub.choices["brands"].add_argument(
        "action", nargs="?", default="list", choices=["list", "opt-in", "opt-out", "approve-keys"]
    )
    sub.choices["brands"].add_argument("brand", nargs="?")
    sub.choices["login"].add_argument("code", help="the code `foyer pair` showed")
    sub.choices["knows"].add_argument("brand")
    sub.choices["erase"].add_argument("brand")
    sub.choices["export"].add_argument("file", help="where to write the JSON export")
    sub.choices["ledger"].add_argument("action", choices=["verify"])
    sub.choices["login"].add_argument("--name", default=f"terminal {os.uname().nodename}")
    sub.choices["devices"].add_argument("action", nargs="?", default="list", choices=["list", "revoke"])
    sub.choices["devices"].add_argument("device", nargs="?")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except httpx.ConnectError as err:
        print(f"cannot reach the hub at {getattr(args, 'url', '?')}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
