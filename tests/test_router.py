"""Routing picks the brand a member means, French or English, and asks when it cannot tell."""

from __future__ import annotations

import pytest

from hub.errors import AmbiguousBrand, NotOptedIn
from hub.protocol import LocalizedText, Manifest
from hub.router import Router, detect_lang, normalize

TEXT = LocalizedText(fr="x", en="x")
SHOP = Manifest(id="sportissimo", name="Sportissimo", aliases=["magasin de sport"], description=TEXT)
POWER = Manifest(id="energie_claire", name="Énergie Claire", aliases=["fournisseur d'électricité"],
                 description=TEXT)
EDF_LIKE = Manifest(id="volt", name="Volt", description=TEXT)
BOTH = {"sportissimo", "energie_claire", "volt"}


@pytest.fixture
def router() -> Router:
    return Router([SHOP, POWER, EDF_LIKE])


@pytest.mark.parametrize(
    ("text", "brand"),
    [
        ("Où en est ma commande Sportissimo 4821 ?", "sportissimo"),
        ("ou en est ma commande SPORTISSIMO", "sportissimo"),
        ("where is my sportisimo order", "sportissimo"),  # typo
        ("Sportisssimo, ma commande ?", "sportissimo"),  # typo
        ("Une question pour le magasin de sport", "sportissimo"),
        ("ma facture energie claire est trop chère", "energie_claire"),
        ("Énergie Claire : relevé de compteur", "energie_claire"),
        ("mon fournisseur d'électricité", "energie_claire"),
        ("Volt, my bill please", "volt"),
    ],
)
def test_routes_by_name_alias_accents_and_typos(router: Router, text: str, brand: str) -> None:
    assert router.route(text, BOTH) == brand


def test_short_names_need_an_exact_match(router: Router) -> None:
    assert router.named_in("je vote demain") == set()
    assert router.named_in("revolt") == set()


def test_asks_when_no_brand_is_named(router: Router) -> None:
    with pytest.raises(AmbiguousBrand) as caught:
        router.route("Bonjour, j'ai une question", BOTH, "fr")
    assert caught.value.candidates == sorted(BOTH)
    assert str(caught.value).startswith("À quelle marque")


def test_asks_when_two_brands_are_named(router: Router) -> None:
    with pytest.raises(AmbiguousBrand) as caught:
        router.route("Which is cheaper, Sportissimo or Volt?", BOTH, "en")
    assert caught.value.candidates == ["sportissimo", "volt"]
    assert str(caught.value).startswith("Which brand")


def test_a_brand_not_opted_in_is_refused_by_name(router: Router) -> None:
    with pytest.raises(NotOptedIn, match="pas choisi Sportissimo"):
        router.route("ma commande sportissimo", {"volt"}, "fr")


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Où en est ma commande ?", "fr"),
        ("je veux parler à un conseiller", "fr"),
        ("Where is my order?", "en"),
        ("I want to talk to a human please", "en"),
        ("4821", "fr"),
    ],
)
def test_detects_french_and_english(text: str, lang: str) -> None:
    assert detect_lang(text) == lang


def test_normalize_strips_accents_and_punctuation() -> None:
    assert normalize("Énergie-Claire, s'il vous plaît !") == "energie claire s il vous plait"
