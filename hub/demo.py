"""``foyer demo``: the embedded broker, the hub and the demo brands, on one machine, one command."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from brand_adapters.registry import DEMO_BRANDS, adapter_dir, load_manifest
from hub.api import create_app
from hub.broker import EmbeddedBroker, free_port
from hub.cli import _serve, save_token
from hub.settings import get_settings
from hub.store import Store

__all__ = ["run_demo"]


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _pick(name: str, preferred: int) -> int:
    port = free_port(preferred=preferred)
    if port != preferred:
        print(f"· {name}: port {preferred} is busy, using {port} instead", flush=True)
    return port


async def run_demo(*, port: int = 8765, broker_port: int = 1883, data_dir: Path | None = None) -> int:
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="foyer-demo-"))
    broker_port = _pick("MQTT broker", broker_port)
    port = _pick("hub HTTP", port)
    async with EmbeddedBroker(port=broker_port) as broker:
        settings = get_settings(
            broker_url=broker.settings.url,
            data_dir=data_dir,
            hub_id="demo-home",
            auto_opt_in=list(DEMO_BRANDS),
            api_port=port,
        )
        desk_port = _pick("Sportissimo's desk", 8780)
        agents = adapter_dir("sportissimo") / "agents.json"
        brands = []
        for brand_id in DEMO_BRANDS:
            args = [
                sys.executable,
                "-m",
                "hub",
                "brand",
                "run",
                brand_id,
                "--broker",
                broker.settings.url,
                "--state",
                str(data_dir / f"brand-{brand_id}.db"),
            ]
            if brand_id == "sportissimo":  # its people have a desk in the demo
                args += ["--desk-port", str(desk_port), "--desk-agents", str(agents)]
            brands.append(subprocess.Popen(args))  # noqa: S603, ASYNC220 - our interpreter; no wait
        names = ", ".join(load_manifest(b).name for b in DEMO_BRANDS)
        url = f"http://127.0.0.1:{port}"
        with Store(settings.database) as store:  # pair this terminal, and offer a code for another device
            _, token = store.devices.pair(store.devices.create_code("admin"), "terminal de la démo")
            code = store.devices.create_code("member")
        tokens = save_token(url, token)
        print(
            f"""
Foyer demo is running.
  web app        {url}/  (pair your browser with the code below)
  hub API        {url}  (OpenAPI: {url}/docs)
  MQTT broker    {broker.settings.url}  (embedded)
  demo brands    {names} (the household is opted in)
  human desk     http://127.0.0.1:{desk_port}/desk  (Sportissimo's agents: login lea, password demo)
  data           {data_dir}

Talk to it:      foyer chat --url {url}   (this user is paired as admin: {tokens})
Another device:  foyer login {code} --url {url}   (one-time code, 10 minutes)
Try:             « Où en est ma commande 4821 ? »   « Je veux transmettre mon relevé »
Stop:            Ctrl-C
""",
            flush=True,
        )

        # uvicorn re-raises SIGTERM once it has stopped: turn it into an exit that runs the
        # finally below, so the brand processes stop with the demo instead of being orphaned.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        try:
            await _serve(create_app(settings), "127.0.0.1", port)
        finally:
            for process in brands:
                process.terminate()
            for process in brands:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(process.wait, 5)
    return 0
