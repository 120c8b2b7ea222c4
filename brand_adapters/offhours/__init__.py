"""A test brand whose people are almost never there (Sundays 03:00-03:01): for off-hours tests."""

from __future__ import annotations

from brand_adapters.instant import setup, teardown

__all__ = ["setup", "teardown"]
