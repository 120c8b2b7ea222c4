"""What the scripted demo bots share: French/English text matching, formatting and SDK wiring."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

from brand_adapters.sdk import Answer, BrandApp, Incoming

__all__ = [
    "DAY_KEYS",
    "Lang",
    "ScriptedBot",
    "SmallTalk",
    "Turn",
    "day_name",
    "find_day",
    "fmt_date",
    "fmt_kwh",
    "fmt_money",
    "fmt_number",
    "is_cancel",
    "is_no",
    "is_yes",
    "keywords",
    "load_json",
    "mentions",
    "normalize",
    "pick",
    "quantities",
    "serve",
    "small_talk",
]

Lang = Literal["fr", "en"]
SmallTalk = Literal["greeting", "thanks", "goodbye"]

DAY_KEYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAYS = {
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = {
    "fr": (
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})
NBSP = "\u00a0"

# --- matching -----------------------------------------------------------------------------------


def keywords(spec: str) -> tuple[str, ...]:
    """``"retour*, send back"`` → ``("retour*", "send back")``: a keyword list, easy to read."""
    return tuple(word.strip() for word in spec.split(",") if word.strip())


def normalize(text: str) -> str:
    """Lowercase, drop accents and punctuation: ``"Où est-ce ?"`` → ``"ou est ce"``."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", bare).split())


def _one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion, swap or substitution."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and (a[diff[0]], a[diff[1]]) == (b[diff[1]], b[diff[0]])
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


@lru_cache(maxsize=1024)
def _keyword(raw: str) -> tuple[str, bool]:
    """A keyword normalised, and whether it ends with ``*`` (prefix match)."""
    return normalize(raw), raw.endswith("*")


def _word_matches(token: str, word: str, prefix: bool) -> bool:
    if token == word or (prefix and token.startswith(word)):
        return True
    # Cheap typo tolerance: one edit on long enough words ("comande", "horraires").
    if len(word) < 6 or len(token) < 5:
        return False
    if prefix:
        return any(_one_edit(token[: len(word) + extra], word) for extra in (-1, 0, 1))
    return _one_edit(token, word)


def mentions(text: str, keywords: Iterable[str]) -> bool:
    """Whether normalised ``text`` holds one of ``keywords`` (``"retour*"`` matches a prefix)."""
    tokens = text.split()
    padded = f" {text} "
    for raw in keywords:
        word, prefix = _keyword(raw)
        if " " in word:
            if f" {word}" in padded and (prefix or f" {word} " in padded):
                return True
        elif any(_word_matches(token, word, prefix) for token in tokens):
            return True
    return False


_GREETINGS = keywords(
    "bonjour, bonsoir, salut, coucou, hello, hi, hey, allo, good morning, good afternoon, good evening"
)
_THANKS = ("merci", "thanks", "thank you", "thx", "parfait", "perfect", "genial", "great")
_GOODBYES = keywords(
    "au revoir, bonne journee, bonne soiree, a bientot, a plus, bye, goodbye, see you, "
    "have a nice day, have a good day"
)
_YES = ("oui", "ouais", "yes", "yep", "yeah", "ok", "okay", "d accord", "volontiers", "sure", "exact")
_NO = ("non", "no", "nope", "pas du tout")
_CANCEL = keywords(
    "annuler, annule, laisse tomber, laissez tomber, cancel, never mind, nevermind, forget it, stop"
)


def small_talk(text: str) -> SmallTalk | None:
    """Classify a normalised message that is only a greeting, a thank-you or a goodbye."""
    if mentions(text, _GOODBYES):
        return "goodbye"
    if mentions(text, _THANKS):
        return "thanks"
    if mentions(text, _GREETINGS):
        return "greeting"
    return None


def is_yes(text: str) -> bool:
    return mentions(text, _YES) and not mentions(text, _NO)


def is_no(text: str) -> bool:
    return mentions(text, _NO)


def is_cancel(text: str) -> bool:
    return mentions(text, _CANCEL)


def find_day(text: str, today: date) -> int | None:
    """The weekday (0 = Monday) a normalised message asks about, if any."""
    if mentions(text, ("demain", "tomorrow")):
        return (today + timedelta(days=1)).weekday()
    if mentions(text, ("aujourd hui", "aujourdhui", "ce soir", "maintenant", "today", "tonight", "now")):
        return today.weekday()
    for index in range(7):
        if mentions(text, (_DAYS["fr"][index], _DAYS["en"][index])):
            return index
    return None


_QUANTITY_RE = re.compile(r"\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?")


def quantities(text: str, lang: Lang) -> list[float]:
    """The numbers in raw ``text``, reading ``12 345``, ``12345,6`` and (English) ``12,345``."""
    found: list[float] = []
    for match in _QUANTITY_RE.finditer(text):
        raw = re.sub(r"[ \u00a0\u202f]", "", match.group())
        if lang == "en" and re.fullmatch(r"\d{1,3}(,\d{3})+", raw):
            raw = raw.replace(",", "")
        found.append(float(raw.replace(",", ".")))
    return found


# --- formatting ---------------------------------------------------------------------------------


def pick(lang: Lang, fr: str, en: str) -> str:
    """The French or the English text, as the household member writes."""
    return fr if lang == "fr" else en


def fmt_number(value: float, lang: Lang, decimals: int = 0) -> str:
    text = f"{value:,.{decimals}f}"
    if lang == "fr":
        text = text.replace(",", NBSP).replace(".", ",")
    return text


def fmt_money(amount: float, lang: Lang, decimals: int = 2) -> str:
    """``1 234,50 €`` in French, ``€1,234.50`` in English; negative amounts keep their sign."""
    sign = "-" if amount < 0 else ""
    number = fmt_number(abs(amount), lang, decimals)
    return f"{sign}{number}{NBSP}€" if lang == "fr" else f"{sign}€{number}"


def fmt_kwh(value: float, lang: Lang) -> str:
    return f"{fmt_number(value, lang)}{NBSP}kWh"


def day_name(weekday: int, lang: Lang) -> str:
    return _DAYS[lang][weekday]


def fmt_date(day: date, lang: Lang, *, weekday: bool = False) -> str:
    """``lundi 17 mars 2025`` / ``1er mars 2025`` in French, ``Monday 17 March 2025`` in English."""
    number = "1er" if lang == "fr" and day.day == 1 else str(day.day)
    text = f"{number} {_MONTHS[lang][day.month - 1]} {day.year}"
    return f"{day_name(day.weekday(), lang)} {text}" if weekday else text


# --- data and wiring ----------------------------------------------------------------------------


def load_json(path: Path) -> dict[str, Any]:
    """Read a bot's packaged ``data.json``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"{path} must hold a JSON object")
    return data


@dataclass(frozen=True)
class Turn:
    """One message being answered: the message, its normalised text and the bot's date."""

    msg: Incoming
    text: str
    today: date

    @classmethod
    def of(cls, msg: Incoming, today: date) -> Turn:
        return cls(msg, normalize(msg.text), today)

    @property
    def lang(self) -> Lang:
        return self.msg.lang

    @property
    def state(self) -> dict[str, Any]:
        return self.msg.state

    def pick(self, fr: str, en: str) -> str:
        return pick(self.lang, fr, en)

    def say(self, fr: str, en: str, suggestions: Sequence[tuple[str, str]] = ()) -> Answer:
        """An answer in the member's language; ``suggestions`` are ``(fr, en)`` pairs."""
        chosen = [pick(self.lang, s_fr, s_en) for s_fr, s_en in suggestions]
        return Answer(pick(self.lang, fr, en), suggestions=chosen[:8])


class ScriptedBot(Protocol):
    """A demo bot: one message in, its answers out, ``msg.state`` updated in place."""

    def answer(self, msg: Incoming) -> list[Answer]: ...


def serve(app: BrandApp, bot: ScriptedBot) -> None:
    """Make ``bot`` answer every household message ``app`` receives."""

    @app.on_message
    async def handle(msg: Incoming) -> list[Answer]:
        return bot.answer(msg)
