"""The two demo brands do real first-line service on their own data, in French and English."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest

from brand_adapters._text import Lang, ScriptedBot, fmt_date, mentions, normalize, quantities
from brand_adapters.energie_claire.bot import EnergieClaireBot
from brand_adapters.registry import DEMO_BRANDS, adapter_dir, load_adapter, load_manifest
from brand_adapters.sdk import Answer, Incoming
from brand_adapters.sportissimo.bot import SportissimoBot

TODAY = date(2025, 3, 14)  # the demo data's reference date, a Friday


@dataclass
class Chat:
    """One conversation with a bot; ``state`` persists between turns as the SDK does."""

    bot: ScriptedBot
    lang: Lang = "fr"
    data: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    last: Answer | None = None

    def say(self, text: str) -> str:
        msg = Incoming(
            id="m1",
            hub_id="home",
            conversation="c1",
            text=text,
            lang=self.lang,
            data=self.data,
            state=self.state,
        )
        answers = self.bot.answer(msg)
        assert len(answers) == 1
        self.last = answers[0]
        assert self.last.suggestions is not None
        return self.last.text.replace("\u00a0", " ")

    @property
    def suggestions(self) -> list[str]:
        assert self.last is not None
        return list(self.last.suggestions)


def shop(lang: Lang = "fr", **data: str) -> Chat:
    return Chat(SportissimoBot(today=TODAY), lang, dict(data))


def power(lang: Lang = "fr", **data: str) -> Chat:
    return Chat(EnergieClaireBot(today=TODAY), lang, dict(data))


# --- shared text helpers ------------------------------------------------------------------------


def test_normalize_strips_accents_case_and_punctuation() -> None:
    assert normalize("Où en est ma COMMANDE n°4821 ?") == "ou en est ma commande n 4821"
    assert normalize("Relevé d'index — cœur") == "releve d index coeur"


def test_mentions_tolerates_one_typo_on_long_words_and_prefixes() -> None:
    assert mentions("ou en est ma comande", ["commande"])
    assert mentions("horraires de lille", ["horaire*"])
    assert mentions("remboursement svp", ["rembours*"])
    assert not mentions("mon velo", ["mon compte"])
    assert not mentions("lion", ["lyon"])  # short words must match exactly


def test_quantities_read_french_and_english_numbers() -> None:
    assert quantities("mon index : 12 345 kWh", "fr") == [12345.0]
    assert quantities("12345,6", "fr") == [12345.6]
    assert quantities("it reads 12,345", "en") == [12345.0]


# --- Sportissimo: orders ------------------------------------------------------------------------


def test_order_status_in_french() -> None:
    text = shop().say("Où en est ma commande 4821 ?")
    assert "4821" in text
    assert "en cours d'acheminement" in text
    assert "Colirapide" in text
    assert "CR482100173FR" in text
    assert "lundi 17 mars 2025" in text
    assert "Chaussures de running" in text


def test_order_status_in_english_without_accents_or_capitals() -> None:
    text = shop("en").say("where is my order 4821")
    assert "on its way" in text
    assert "CR482100173FR" in text
    assert "Monday 17 March 2025" in text
    assert "Stride 3 running shoes" in text
    assert "€104.99" in text


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("4822", ["livrée le 1er mars 2025", "jusqu'au 31 mars 2025"]),
        ("5017", ["en cours de préparation", "Lyon Part-Dieu", "samedi 15 mars 2025"]),
        ("5120", ["expédiée le 13 mars 2025", "Hexa Express", "HX7781205120", "mardi 18 mars 2025"]),
        ("5233", ["livrée le 20 janvier 2025", "a pris fin le 19 février 2025"]),
        ("5304", ["annulée le 5 mars 2025", "129,00 €", "6 mars 2025"]),
        ("5388", ["Paris Montparnasse", "jusqu'au 27 mars 2025", "9h30–20h30"]),
        ("5410", ["livrée le 11 mars 2025", "jusqu'au 10 avril 2025"]),
    ],
)
def test_each_demo_order_states_its_real_status(number: str, expected: list[str]) -> None:
    text = shop().say(f"ou en est la commande {number}")
    for part in expected:
        assert part in text


def test_order_number_asked_then_understood_on_the_next_turn() -> None:
    chat = shop()
    question = chat.say("Bonjour, où en est ma comande ?")  # typo on purpose
    assert "numéro de commande" in question
    assert chat.state["pending"] == "order_number"
    text = chat.say("4821")
    assert "CR482100173FR" in text
    assert "pending" not in chat.state
    assert chat.state["order"] == "4821"


def test_shared_order_history_answers_without_asking() -> None:
    text = shop("en", order_history="5120").say("Where's my parcel?")
    assert "Order 5120" in text or "order 5120" in text
    assert "Hexa Express" in text


def test_unknown_order_gets_help_then_the_right_number_works() -> None:
    chat = shop()
    text = chat.say("ma commande 9999 n'est pas arrivée")
    assert "Je ne trouve pas de commande n° 9999" in text
    assert "4 chiffres" in text
    assert "e-mail de confirmation" in text
    assert "4 chiffres" in chat.say("12")
    assert "expédiée le 13 mars 2025" in chat.say("pardon, c'est 5120")


def test_unknown_order_in_english() -> None:
    text = shop("en").say("where is order 1234")
    assert "can't find an order number 1234" in text
    assert "4 digits" in text
    assert "confirmation e-mail" in text


def test_live_bot_moves_demo_dates_to_the_real_today() -> None:
    text = Chat(SportissimoBot(), "en").say("where is my order 4821")
    expected = fmt_date(date.today() + timedelta(days=3), "en", weekday=True)
    assert expected in text


# --- Sportissimo: returns -----------------------------------------------------------------------


def test_return_flow_by_parcel_in_french() -> None:
    chat = shop(email="claire@example.org")
    policy = chat.say("Je voudrais retourner un article")
    assert "30 jours" in policy
    assert "gratuitement dans l'un de nos magasins" in policy
    assert "numéro de commande" in policy
    method = chat.say("4822")
    assert "jusqu'au 31 mars 2025" in method
    assert chat.suggestions == ["En magasin", "Par colis"]
    done = chat.say("par colis")
    assert "R-4822-1" in done
    assert "claire@example.org" in done
    assert "avant le 31 mars 2025" in done
    assert chat.state["returns"] == {"4822": "R-4822-1"}
    assert "déjà ouvert" in chat.say("retour de la commande 4822")


def test_return_in_a_named_store_in_english() -> None:
    chat = shop("en")
    assert "or send it by parcel" in chat.say("I want to return order 5410")
    done = chat.say("in store please, in Lille")
    assert "R-5410-1" in done
    assert "25 rue Neuve, 59000 Lille" in done
    assert "10 April 2025" in done


def test_return_offered_for_the_order_just_discussed() -> None:
    chat = shop()
    chat.say("où en est ma commande 4822")
    offer = chat.say("je veux la retourner")
    assert "Souhaitez-vous retourner la commande 4822 ?" in offer
    assert "ou la renvoyer par colis" in chat.say("oui")
    assert "R-4822-1" in chat.say("en magasin")


def test_return_refused_before_delivery_and_after_the_window() -> None:
    assert "hasn't been delivered yet" in shop("en").say("return order 4821")
    late = shop().say("je veux retourner la commande 5233")
    assert "ne peut plus être retournée" in late
    assert "19 février 2025" in late
    assert "garantie légale" in late
    assert "annulée" in shop().say("remboursement commande 5304")


def test_return_window_is_computed_from_today() -> None:
    later = Chat(SportissimoBot(today=date(2025, 4, 15)))
    text = later.say("retourner la commande 4822")
    assert "a pris fin le 31 mars 2025" in text
    assert "R-4822" not in text


# --- Sportissimo: stores ------------------------------------------------------------------------


def test_weekly_store_hours() -> None:
    text = shop().say("horaires du magasin de Lyon")
    assert "Lyon Part-Dieu" in text
    assert "Du lundi au samedi : 10h–20h" in text
    assert "Dimanche : fermé" in text


def test_is_a_store_open_on_sunday() -> None:
    closed = shop("en").say("is the Lille store open on Sunday")
    assert closed.startswith("No, our Lille Centre store is closed on Sundays")
    assert "Tuesday to Saturday: 10:00–19:30" in closed
    assert "Yes" in shop("en").say("is the Paris store open on sundays?")
    assert "11:00–19:00" in shop("en").say("is the Paris store open on sundays?")


def test_store_asked_then_named_keeps_the_day() -> None:
    chat = shop()
    question = chat.say("vous êtes ouverts dimanche ?")
    assert "Lequel vous intéresse" in question
    assert chat.suggestions == [
        "Lyon Part-Dieu",
        "Paris Montparnasse",
        "Lille Centre",
        "Bordeaux Sainte-Catherine",
    ]
    assert "ouvert le dimanche : 10h–13h" in chat.say("Bordeaux")


def test_tomorrow_is_relative_to_today() -> None:
    text = shop("en").say("opening hours tomorrow in bordeaux")
    assert "Saturdays: 09:30–19:30" in text


# --- Sportissimo: small talk and fallback -------------------------------------------------------


def test_sportissimo_greeting_thanks_goodbye() -> None:
    assert "assistant Sportissimo" in shop(first_name="Claire").say("Bonjour")
    assert "Claire" in shop(first_name="Claire").say("Bonjour")
    assert "You're welcome" in shop("en").say("thanks!")
    assert "à bientôt" in shop().say("merci, au revoir")


def test_sportissimo_fallback_says_what_it_can_do() -> None:
    chat = shop()
    text = chat.say("quel temps fait-il ?")
    assert "Je peux" in text
    assert chat.suggestions == ["Où en est ma commande ?", "Faire un retour", "Horaires des magasins"]
    english = shop("en")
    english.say("blah blah")
    assert english.suggestions == ["Where is my order?", "Return an item", "Store opening hours"]


# --- Énergie Claire: meter readings -------------------------------------------------------------


def test_meter_reading_multi_turn_refused_when_lower_then_accepted() -> None:
    bot = EnergieClaireBot(today=TODAY)
    chat = Chat(bot)
    assert "numéro client" in chat.say("Je veux transmettre mon relevé")
    ask_index = chat.say("EC-100234")
    assert "Claire Martin" in ask_index
    assert "1er janvier 2025" in ask_index
    assert "12 384 kWh" in ask_index
    lower = chat.say("12 000")
    assert "inférieur à votre dernier relevé" in lower
    assert "12 384 kWh" in lower
    assert chat.state["pending"] == "reading_index"
    done = chat.say("13 100 kWh")
    assert "C'est enregistré : index 13 100 kWh" in done
    assert "716 kWh en 72 jours" in done
    assert "177,57 €" in done  # 716 kWh × 0,2480 €
    assert "0,2480 €/kWh" in done
    assert chat.state["last_reading"] == {"customer": "EC-100234", "index": 13100, "date": "2025-03-14"}
    assert bot.submitted["EC-100234"].index == 13100


def test_meter_index_must_be_a_number() -> None:
    chat = power(customer_number="EC-100234")
    chat.say("je veux transmettre mon index")
    text = chat.say("douze mille")
    assert "en chiffres" in text
    assert chat.state["pending"] == "reading_index"


def test_meter_reading_with_shared_customer_number_in_english() -> None:
    text = power("en", customer_number="EC-100587").say("I'd like to submit my meter reading: 6,500 kWh")
    assert "Recorded: index 6,500 kWh" in text
    assert "478 kWh" in text  # since 6,022 kWh on 1 January 2025
    assert "€118.54" in text


def test_index_given_before_the_customer_number_is_kept() -> None:
    chat = power()
    assert "numéro client" in chat.say("mon relevé : 11 000")
    done = chat.say("102045")  # a bare number answers "what is your customer number?"
    assert "index 11 000 kWh" in done
    assert "630 kWh" in done


def test_unusual_reading_needs_confirmation_and_can_be_corrected() -> None:
    bot = EnergieClaireBot(today=TODAY)
    chat = Chat(bot, "en", {"customer_number": "EC-101122"})
    check = chat.say("meter reading 90000")
    assert "very unusual" in check
    assert "EC-101122" not in bot.submitted
    chat.say("no")
    done = chat.say("23 900")
    assert "Recorded: index 23,900 kWh" in done
    assert "750 kWh over 13 days" in done
    corrected = chat.say("24,000")
    assert "It replaces the index 23,900 kWh" in corrected


def test_unknown_customer_number() -> None:
    text = power().say("relevé pour EC-999999")
    assert "Je ne trouve pas le numéro client EC-999999" in text


# --- Énergie Claire: bills ----------------------------------------------------------------------


def test_bill_explanation_in_french_after_asking_the_customer_number() -> None:
    chat = power()
    assert "numéro client" in chat.say("Pourquoi ma facture est si élevée ?")
    text = chat.say("EC-100234")
    for part in (
        "FC-101002",
        "446,77 € TTC",
        "abonnement : 26,40 €",
        "1 276 kWh × 0,2480 € = 316,45 €",
        "103,92 €",
        "199,04 € de plus que les 247,73 €",
        "560 kWh de plus",
        "+127,46 €",
        "hiver",
        "de 0,2276 € à 0,2480 € le 1er novembre 2024 : +26,03 €",
    ):
        assert part in text


def test_lower_bill_explained_in_english_with_the_shared_customer_number() -> None:
    chat = power("en", customer_number="EC-101122")
    text = chat.say("explain my bill")
    assert "€417.45" in text
    assert "€104.71 less than the €522.16" in text
    assert "325 kWh less" in text
    assert "-€80.60" in text
    assert chat.suggestions == ["Submit a meter reading", "Price per kWh"]


def test_bill_data_adds_up() -> None:
    bot = EnergieClaireBot(today=TODAY)
    for customer in bot.customers.values():
        readings = customer.readings
        for bill in customer.bills:
            start = next(r for r in readings if r.day == bill.start)
            end = next(r for r in readings if r.day == bill.end + timedelta(days=1))
            assert end.index - start.index == bill.kwh
            assert bill.total == round(bill.subscription + bill.energy + bill.taxes, 2)


def test_price_and_small_talk() -> None:
    assert "0,2480 €" in power().say("quel est le prix du kWh ?")
    assert "Sophie Bernard" in power("en", full_name="Sophie Bernard").say("hello")
    assert "Have a nice day" in power("en").say("bye")


def test_energie_claire_fallback_has_suggestions() -> None:
    chat = power()
    assert "Je peux" in chat.say("je déménage le mois prochain")
    assert chat.suggestions == ["Transmettre mon relevé", "Expliquer ma facture", "Prix du kWh"]


# --- manifests and wiring -----------------------------------------------------------------------


@pytest.mark.parametrize("brand", DEMO_BRANDS)
def test_demo_manifest_loads_and_matches_its_folder(brand: str) -> None:
    manifest = load_manifest(brand)
    assert manifest.id == brand == adapter_dir(brand).name
    assert manifest.languages == ["fr", "en"]
    assert manifest.humans.available
    assert manifest.humans.timezone == "Europe/Paris"
    assert all(scope.purpose.fr and scope.purpose.en for scope in manifest.scopes)
    assert (adapter_dir(brand) / "data.json").is_file()


class _FakeApp:
    """Stands in for BrandApp: ``setup`` only registers a handler."""

    def __init__(self) -> None:
        self.handler: Any = None

    def on_message(self, handler: Any) -> Any:
        self.handler = handler
        return handler


@pytest.mark.parametrize(("brand", "words"), [("sportissimo", "Sportissimo"), ("energie_claire", "Énergie")])
async def test_setup_registers_a_handler_that_answers(brand: str, words: str) -> None:
    adapter = load_adapter(brand)
    app = _FakeApp()
    await adapter.setup(app)
    msg = Incoming(id="m1", hub_id="home", conversation="c1", text="Bonjour", lang="fr", data={}, state={})
    answers = await app.handler(msg)
    assert words in answers[0].text
    await adapter.teardown(app)


def test_live_energy_data_moves_by_whole_years_to_stay_recent() -> None:
    bot = EnergieClaireBot()
    Chat(bot, data={"customer_number": "EC-100234"}).say("je veux transmettre mon relevé")
    last = bot.customers["EC-100234"].readings[-1].day
    assert (last.month, last.day) == (1, 1)
    assert timedelta(days=72) <= date.today() - last <= timedelta(days=438)
