"""Run one registered brand adapter as its own process: ``foyer brand run <id>``."""

from __future__ import annotations

import logging
from pathlib import Path

from brand_adapters.registry import load_adapter, load_manifest
from brand_adapters.sdk import BrandApp
from hub.mqtt import BrokerSettings

__all__ = ["build_app", "run_adapter"]

log = logging.getLogger(__name__)


async def build_app(adapter_id: str, broker: BrokerSettings, state_path: Path) -> BrandApp:
    """Create the adapter's app and run its ``setup``; the caller enters it with ``async with``."""
    app = BrandApp(load_manifest(adapter_id), broker=broker, state_path=state_path)
    await load_adapter(adapter_id).setup(app)
    return app


async def run_adapter(adapter_id: str, broker: BrokerSettings, state_path: Path) -> None:
    app = await build_app(adapter_id, broker, state_path)
    try:
        async with app:
            log.info("brand %s connected to %s", adapter_id, broker.url)
            print(f"brand {adapter_id} ready on {broker.url}", flush=True)
            await app.serve_forever()
    finally:
        await load_adapter(adapter_id).teardown(app)
