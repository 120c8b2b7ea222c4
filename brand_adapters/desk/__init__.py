"""The human desk: where a brand's people take over conversations from its bot.

The state and the opening hours live here and are used by the SDK
(:class:`~brand_adapters.sdk.BrandApp`); the web console is
:mod:`brand_adapters.desk.web` (FastAPI, imported only when a desk is served) and its
agents are defined in a JSON file read by :mod:`brand_adapters.desk.agents`.
See ``docs/desk.md``.
"""

from brand_adapters.desk.hours import check_hours, humans_open_now, next_opening
from brand_adapters.desk.state import (
    Callback,
    DeskConflict,
    DeskConversation,
    DeskError,
    DeskEvent,
    DeskLine,
    DeskStore,
    Feedback,
    Idea,
    UnknownDeskItem,
)

__all__ = [
    "Callback",
    "DeskConflict",
    "DeskConversation",
    "DeskError",
    "DeskEvent",
    "DeskLine",
    "DeskStore",
    "Feedback",
    "Idea",
    "UnknownDeskItem",
    "check_hours",
    "humans_open_now",
    "next_opening",
]
