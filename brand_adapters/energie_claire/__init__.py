"""Énergie Claire, a fictional electricity supplier: scripted demo of first-line service."""

from __future__ import annotations

from brand_adapters._text import serve
from brand_adapters.energie_claire.bot import EnergieClaireBot
from brand_adapters.sdk import BrandApp

__all__ = ["EnergieClaireBot", "setup", "teardown"]


async def setup(app: BrandApp) -> None:
    """Take meter readings, explain bills and quote prices, in French or English."""
    serve(app, EnergieClaireBot())


async def teardown(app: BrandApp) -> None:
    """Nothing to release: submitted readings live only in the bot's memory."""
