"""Which brand is a household message for, and in which language is it written.

The router picks, in this order: the brand the client chose explicitly; the
brand of the conversation in progress; a brand named in the text (its name or
an alias, accents and case ignored, small typos tolerated). When it cannot tell
— no brand named, or several — it raises :class:`~hub.errors.AmbiguousBrand`
so the hub asks the member instead of guessing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

from hub.errors import AmbiguousBrand, NotOptedIn
from hub.protocol import Manifest

__all__ = ["Router", "detect_lang", "normalize"]

Lang = Literal["fr", "en"]

_FR_WORDS = frozenset(
    [
        "le",
        "la",
        "les",
        "un",
        "une",
        "des",
        "du",
        "de",
        "au",
        "aux",
        "et",
        "ou",
        "est",
        "sont",
        "mon",
        "ma",
        "mes",
        "ton",
        "ta",
        "votre",
        "vos",
        "notre",
        "nos",
        "je",
        "tu",
        "il",
        "elle",
        "nous",
        "vous",
        "ils",
        "elles",
        "pas",
        "ne",
        "que",
        "qui",
        "quoi",
        "quand",
        "comment",
        "pourquoi",
        "où",
        "ou",
        "combien",
        "bonjour",
        "bonsoir",
        "merci",
        "salut",
        "oui",
        "non",
        "avec",
        "pour",
        "sur",
        "dans",
        "commande",
        "facture",
        "magasin",
        "parler",
        "conseiller",
        "quelqu'un",
        "humain",
        "veux",
        "voudrais",
        "peux",
        "pouvez",
        "s'il",
        "plait",
        "plaît",
        "svp",
        "relevé",
        "aide",
        "horaires",
        "retour",
        "rembourser",
        "livraison",
        "colis",
        "c'est",
        "j'ai",
    ]
)
_EN_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "is",
        "are",
        "my",
        "your",
        "our",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "not",
        "no",
        "yes",
        "what",
        "when",
        "how",
        "why",
        "where",
        "which",
        "who",
        "hello",
        "hi",
        "thanks",
        "thank",
        "please",
        "with",
        "for",
        "on",
        "in",
        "order",
        "bill",
        "store",
        "talk",
        "speak",
        "agent",
        "human",
        "person",
        "want",
        "would",
        "like",
        "can",
        "could",
        "help",
        "hours",
        "return",
        "refund",
        "delivery",
        "parcel",
        "it's",
        "i'm",
        "i'd",
    ]
)
_WORD_RE = re.compile(r"[\w']+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-case, strip accents, keep letters and digits separated by single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", stripped).split())


def detect_lang(text: str, default: Lang = "fr") -> Lang:
    """French or English, from common words and accents; French when in doubt."""
    words = [w.strip("'") for w in _WORD_RE.findall(text.casefold())]
    fr = sum(w in _FR_WORDS for w in words) + 2 * len(re.findall(r"[éèêàùçôîœ]", text.casefold()))
    en = sum(w in _EN_WORDS for w in words)
    if fr == en:
        return default
    return "fr" if fr > en else "en"


@dataclass(frozen=True)
class _Name:
    brand_id: str
    tokens: tuple[str, ...]


class Router:
    """Finds brands named in free text among a directory of manifests."""

    def __init__(self, manifests: Iterable[Manifest], *, fuzzy_threshold: float = 0.84) -> None:
        self._names: list[_Name] = []
        self._display: dict[str, str] = {}
        self._threshold = fuzzy_threshold
        for manifest in manifests:
            self.add(manifest)

    def add(self, manifest: Manifest) -> None:
        self._names = [n for n in self._names if n.brand_id != manifest.id]
        self._display[manifest.id] = manifest.name
        for name in {manifest.name, manifest.id.replace("_", " "), *manifest.aliases}:
            tokens = tuple(normalize(name).split())
            if tokens:
                self._names.append(_Name(manifest.id, tokens))

    def named_in(self, text: str) -> set[str]:
        """Every brand whose name or alias appears in ``text`` (exactly or with a small typo)."""
        words = normalize(text).split()
        found: set[str] = set()
        for name in self._names:
            size = len(name.tokens)
            target = " ".join(name.tokens)
            for start in range(len(words) - size + 1):
                window = " ".join(words[start : start + size])
                if window == target or self._close(window, target):
                    found.add(name.brand_id)
                    break
        return found

    def _close(self, window: str, target: str) -> bool:
        # Typos only count on names long enough to be distinctive ("sportisimo", not "edf").
        if len(target) < 6 or abs(len(window) - len(target)) > 2:
            return False
        return SequenceMatcher(None, window, target).ratio() >= self._threshold

    def route(self, text: str, opted_in: set[str], lang: Lang = "fr") -> str:
        """The one opted-in brand ``text`` is for; raise if none, several, or not opted in."""
        named = self.named_in(text)
        chosen = named & opted_in
        if len(chosen) == 1:
            return chosen.pop()
        if not chosen and named:
            brand_id = sorted(named)[0]
            name = self._display.get(brand_id, brand_id)
            raise NotOptedIn(
                f"Vous n'avez pas choisi {name} : activez-la d'abord dans vos marques."
                if lang == "fr"
                else f"You have not opted into {name}: turn it on in your brands first.",
            )
        candidates = sorted(chosen or opted_in)
        names = ", ".join(self._display.get(b, b) for b in candidates)
        if lang == "fr":
            question = (
                f"À quelle marque voulez-vous écrire ? {names}"
                if names
                else ("Vous n'avez encore choisi aucune marque.")
            )
        else:
            question = (
                f"Which brand is this for? {names}" if names else ("You have not opted into any brand yet.")
            )
        raise AmbiguousBrand(question, candidates)
