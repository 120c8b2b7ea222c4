"""A test brand that answers every message at once: used by benchmarks and end-to-end tests."""

from __future__ import annotations

from brand_adapters.sdk import BrandApp, Incoming

__all__ = ["setup", "teardown"]


async def setup(app: BrandApp) -> None:
    @app.on_message
    async def answer(msg: Incoming) -> str:
        turn = int(msg.state.get("turns", 0)) + 1
        msg.state["turns"] = turn
        return f"reçu #{turn}: {msg.text}" if msg.lang == "fr" else f"received #{turn}: {msg.text}"


async def teardown(app: BrandApp) -> None:
    """Nothing to release."""
