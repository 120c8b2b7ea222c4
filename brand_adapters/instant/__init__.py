"""A test brand that answers every message at once: used by benchmarks and end-to-end tests.

"adresse"/"address" in a message makes it ask the member for their postal address
(a data request), to exercise that path end to end.
"""

from __future__ import annotations

from brand_adapters.sdk import AskData, BrandApp, DataAnswer, HandlerResult, Incoming

__all__ = ["setup", "teardown"]


async def setup(app: BrandApp) -> None:
    @app.on_message
    async def answer(msg: Incoming) -> HandlerResult:
        turn = int(msg.state.get("turns", 0)) + 1
        msg.state["turns"] = turn
        said = f"reçu #{turn}: {msg.text}" if msg.lang == "fr" else f"received #{turn}: {msg.text}"
        if "adresse" in msg.text.lower() or "address" in msg.text.lower():
            return [said, AskData("postal_address", "pour vous livrer / to deliver to you")]
        return said

    @app.on_data
    async def got(data: DataAnswer) -> HandlerResult:
        if data.granted:
            return f"adresse reçue : {data.value}"
        return "sans adresse, je ne peux pas livrer"


async def teardown(app: BrandApp) -> None:
    """Nothing to release."""
