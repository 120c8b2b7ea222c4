"""User-facing sentences of the hub, French first, English too."""

from __future__ import annotations

from typing import Literal

__all__ = ["Lang", "say"]

Lang = Literal["fr", "en"]

_TEXTS: dict[str, dict[str, str]] = {
    "brand_offline": {
        "fr": "{brand} est hors ligne pour le moment : votre message est gardé et partira dès son retour.",
        "en": "{brand} is offline right now: your message is kept and will go out as soon as it is back.",
    },
    "brand_back": {
        "fr": "{brand} est de retour : les messages en attente partent.",
        "en": "{brand} is back: waiting messages are going out.",
    },
}


def say(key: str, lang: str, **values: str) -> str:
    """The sentence ``key`` in ``lang`` (French if the language is unknown)."""
    texts = _TEXTS[key]
    return texts.get(lang, texts["fr"]).format(**values)
