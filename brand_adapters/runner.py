"""Run one registered brand adapter as its own process: ``foyer brand run <id>``.

With ``--desk-port P --desk-agents FILE`` the same process (and event loop) also serves
the human desk on ``http://127.0.0.1:P/desk`` (see ``docs/desk.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

from brand_adapters.desk.agents import Directory, load_agents
from brand_adapters.registry import load_adapter, load_manifest
from brand_adapters.sdk import BrandApp
from hub.mqtt import BrokerSettings

__all__ = ["build_app", "run_adapter", "serve_desk"]

log = logging.getLogger(__name__)


async def build_app(adapter_id: str, broker: BrokerSettings, state_path: Path) -> BrandApp:
    """Create the adapter's app and run its ``setup``; the caller enters it with ``async with``."""
    app = BrandApp(load_manifest(adapter_id), broker=broker, state_path=state_path)
    await load_adapter(adapter_id).setup(app)
    return app


async def run_adapter(
    adapter_id: str,
    broker: BrokerSettings,
    state_path: Path,
    desk_port: int | None = None,
    desk_agents: Path | None = None,
    *,
    desk_host: str = "127.0.0.1",
) -> None:
    """Connect the adapter and serve until stopped; with ``desk_port``, serve its desk too."""
    if desk_port is not None and desk_agents is None:
        raise ValueError("a desk needs its agents: give --desk-agents FILE with --desk-port")
    agents = load_agents(desk_agents) if desk_agents is not None else None  # fail before connecting
    app = await build_app(adapter_id, broker, state_path)
    try:
        async with app:
            log.info("brand %s connected to %s", adapter_id, broker.url)
            print(f"brand {adapter_id} ready on {broker.url}", flush=True)
            if desk_port is None or agents is None:
                await app.serve_forever()
            else:
                await serve_desk(app, agents, desk_host, desk_port)
    finally:
        await load_adapter(adapter_id).teardown(app)


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"the desk cannot listen on {host}:{port}: {err.strerror or err}") from err
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve_desk(app: BrandApp, agents: Directory, host: str, port: int) -> None:
    """Serve ``app``'s desk with uvicorn on this event loop, until cancelled."""
    import uvicorn

    from brand_adapters.desk.web import create_desk_app

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # signals are the adapter process's business, not the desk's

    config = uvicorn.Config(
        create_desk_app(app, agents),
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws_ping_interval=20,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=3,
    )
    server = _Server(config)
    sock = _listen(host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"desk-{app.brand_id}")
    try:
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has a flag, no event
            await asyncio.sleep(0.02)
        if task.done():
            task.result()
            raise OSError(f"the desk stopped at start on {host}:{port}")
        shown = f"[{host}]" if ":" in host else host
        print(f"desk ready on http://{shown}:{port}/desk", flush=True)
        await asyncio.shield(task)  # cancelled: uvicorn still closes its sockets itself, below
    finally:
        # Cancelling uvicorn would leave its listener registered with the event loop: ask it to stop.
        server.should_exit = True
        await asyncio.wait([task])
        sock.close()
