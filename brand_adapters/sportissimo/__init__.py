"""Sportissimo, a fictional sports retailer: scripted demo of first-line customer service."""

from __future__ import annotations

from brand_adapters._text import serve
from brand_adapters.sdk import BrandApp
from brand_adapters.sportissimo.bot import SportissimoBot

__all__ = ["SportissimoBot", "setup", "teardown"]


async def setup(app: BrandApp) -> None:
    """Track orders, open returns and give store hours, in French or English."""
    serve(app, SportissimoBot())


async def teardown(app: BrandApp) -> None:
    """Nothing to release: the bot holds no connection or file."""
