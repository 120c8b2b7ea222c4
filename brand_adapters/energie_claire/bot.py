"""Énergie Claire's scripted first-line service: meter readings, bill explanations, prices."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from brand_adapters._text import (
    Lang,
    Turn,
    fmt_date,
    fmt_kwh,
    fmt_money,
    fmt_number,
    is_cancel,
    is_yes,
    keywords,
    load_json,
    mentions,
    pick,
    quantities,
    small_talk,
)
from brand_adapters.sdk import Answer, Incoming

__all__ = ["DATA_PATH", "Bill", "Customer", "EnergieClaireBot", "Reading", "Tariff"]

DATA_PATH = Path(__file__).parent / "data.json"

_BILL_NOUNS = ("facture*", "bill", "bills", "billing", "invoice*")
_BILL_WORDS = keywords(
    "montant, cher, chere, elevee, eleve, augment*, hausse, expensive, high, higher, amount"
)
_READING_WORDS = keywords("releve*, relever, index, compteur, transm*, meter*, reading*, submit*")
_PRICE_WORDS = keywords("prix, tarif*, price*, rate, rates, cout, coute, kwh, cost*, how much")
_WINTER_MONTHS = (11, 12, 1, 2)
_UNUSUAL_KWH_PER_DAY = 100
_FLOWS = {
    "reading_customer": "reading",
    "reading_index": "reading",
    "bill_customer": "bill",
    "identify_customer": "identify",
    "reading_confirm": "reading",
}
_BARE_INDEX_RE = re.compile(r"[\d ]+(?: kwh)?")
_CUSTOMER_RE = re.compile(r"\bEC[\s-]?(\d{6})\b", re.IGNORECASE)
_BARE_CUSTOMER_RE = re.compile(r"(?<!\d)(\d{6})(?!\d)")

_SUGGEST_MENU = (
    ("Transmettre mon relevé", "Submit a meter reading"),
    ("Expliquer ma facture", "Explain my bill"),
    ("Prix du kWh", "Price per kWh"),
)
_SMALL_TALK = {
    "greeting": (
        "Bonjour{name} ! Je suis l'assistant d'Énergie Claire. Je peux enregistrer votre relevé"
        " de compteur, vous expliquer votre facture ou vous donner nos prix. Que puis-je faire"
        " pour vous ?",
        "Hello{name}! I'm the Énergie Claire assistant. I can record your meter reading, explain"
        " your bill or give you our prices. How can I help?",
    ),
    "thanks": (
        "Avec plaisir ! Puis-je vous aider pour autre chose ?",
        "You're welcome! Can I help with anything else?",
    ),
    "goodbye": (
        "Merci d'avoir contacté Énergie Claire. Bonne journée !",
        "Thank you for contacting Énergie Claire. Have a nice day!",
    ),
}


@dataclass(frozen=True)
class Reading:
    day: date
    index: int


@dataclass(frozen=True)
class Bill:
    number: str
    start: date
    end: date
    issued: date
    kwh: int
    price: float
    subscription: float
    taxes: float

    @property
    def energy(self) -> float:
        return round(self.kwh * self.price, 2)

    @property
    def total(self) -> float:
        return round(self.subscription + self.energy + self.taxes, 2)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def winter(self) -> bool:
        """Whether most of the billed period falls in the heating months (November–February)."""
        mid = self.start + (self.end - self.start) / 2
        return mid.month in _WINTER_MONTHS


@dataclass(frozen=True)
class Customer:
    number: str
    full_name: str
    tariff: str
    readings: tuple[Reading, ...]
    bills: tuple[Bill, ...]

    @classmethod
    def from_json(cls, number: str, raw: dict[str, Any], years: int = 0) -> Customer:
        """Parse one customer, moving every date ``years`` later (see ``EnergieClaireBot``)."""

        def day(iso: str) -> date:
            parsed = date.fromisoformat(iso)
            return parsed.replace(year=parsed.year + years)  # the data holds no 29 February

        return cls(
            number=number,
            full_name=str(raw["full_name"]),
            tariff=str(raw["tariff"]),
            readings=tuple(Reading(day(r["date"]), int(r["index"])) for r in raw["readings"]),
            bills=tuple(
                Bill(
                    number=str(b["number"]),
                    start=day(b["period_start"]),
                    end=day(b["period_end"]),
                    issued=day(b["issued_on"]),
                    kwh=int(b["kwh"]),
                    price=float(b["price_per_kwh"]),
                    subscription=float(b["subscription"]),
                    taxes=float(b["taxes"]),
                )
                for b in raw["bills"]
            ),
        )


@dataclass(frozen=True)
class Tariff:
    name_fr: str
    name_en: str
    price: float
    monthly: float
    since: date
    previous_price: float


class EnergieClaireBot:
    """Answers Énergie Claire customers in French or English; ``answer`` updates ``msg.state``.

    ``data.json`` is written as of its ``reference_date``; with an explicit ``today`` (tests)
    its dates are read as written. Submitted readings are kept in memory (``submitted``): each
    replaces the customer's previous one and is checked against the last reading in the data.
    """

    def __init__(self, today: date | None = None, data_path: Path = DATA_PATH) -> None:
        self._data = load_json(data_path)
        self.reference_date = date.fromisoformat(self._data["reference_date"])
        self.submitted: dict[str, Reading] = {}
        self._today = today
        self._years = -1
        self.tariffs: dict[str, Tariff] = {}
        self.customers: dict[str, Customer] = {}
        self._load(0)

    def _load(self, years: int) -> None:
        """(Re)read the data, every date moved ``years`` later, unless it is already so."""
        if years == self._years:
            return
        self._years = years
        self.tariffs = {
            key: Tariff(
                str(t["fr"]),
                str(t["en"]),
                float(t["price_per_kwh"]),
                float(t["subscription_per_month"]),
                date.fromisoformat(t["since"]).replace(year=date.fromisoformat(t["since"]).year + years),
                float(t["previous_price_per_kwh"]),
            )
            for key, t in self._data["tariffs"].items()
        }
        self.customers = {n: Customer.from_json(n, c, years) for n, c in self._data["customers"].items()}

    def _now(self) -> date:
        """The bot's date. Live, the data moves by whole years to stay recent (winter stays winter)."""
        if self._today is not None:
            return self._today
        today, ref = date.today(), self.reference_date
        self._load(max(0, today.year - ref.year - ((today.month, today.day) < (ref.month, ref.day))))
        return today

    def answer(self, msg: Incoming) -> list[Answer]:
        """Answer one message; the reading and bill flows keep ``pending`` in ``msg.state``."""
        turn = Turn.of(msg, self._now())
        intent = self._intent(turn.text)
        pending = str(msg.state.pop("pending", ""))
        if pending and is_cancel(turn.text):
            msg.state.pop("index", None)
            return [turn.say("C'est annulé. Autre chose ?", "Cancelled. Anything else?", _SUGGEST_MENU)]
        if pending and intent in (None, _FLOWS.get(pending)):
            intent = _FLOWS[pending]  # the member answers our question
        elif "customer" in msg.state and _BARE_INDEX_RE.fullmatch(turn.text):
            intent = "reading"  # a bare number once we know the customer: an index or a correction
        elif intent is None and _CUSTOMER_RE.search(msg.text):
            intent = "identify"
        match intent:
            case "reading":
                reply = self._reading(turn, pending)
            case "bill":
                reply = self._bill(turn, pending)
            case "price":
                reply = self._price(turn)
            case "identify":
                found, _ = self._identify(turn, "identify_customer", pending)
                reply = (
                    found
                    if isinstance(found, Answer)
                    else turn.say(
                        f"Merci, {found.full_name}. Que souhaitez-vous faire ?",
                        f"Thank you, {found.full_name}. What would you like to do?",
                        _SUGGEST_MENU,
                    )
                )
            case "greeting" | "thanks" | "goodbye":
                fr, en = _SMALL_TALK[intent]
                name = turn.msg.data.get("first_name") or turn.msg.data.get("full_name", "")
                name = f" {name}" if name else ""
                menu = _SUGGEST_MENU if intent != "goodbye" else ()
                reply = turn.say(fr.format(name=name), en.format(name=name), menu)
            case _:
                reply = turn.say(
                    "Je n'ai pas bien compris. Je peux :\n"
                    "• enregistrer votre relevé de compteur (« Je veux transmettre mon relevé »)\n"
                    "• vous expliquer votre dernière facture (« Pourquoi ma facture est si élevée ? »)\n"
                    "• vous donner le prix du kWh et de l'abonnement.",
                    "Sorry, I didn't quite get that. I can:\n"
                    '• record your meter reading ("I want to submit my meter reading")\n'
                    '• explain your latest bill ("Why is my bill so high?")\n'
                    "• give you the price per kWh and the subscription.",
                    _SUGGEST_MENU,
                )
        return [reply]

    @staticmethod
    def _intent(text: str) -> str | None:
        if mentions(text, _BILL_NOUNS):
            return "bill"
        if mentions(text, _READING_WORDS):
            return "reading"
        if mentions(text, _BILL_WORDS):
            return "bill"
        if mentions(text, _PRICE_WORDS):
            return "price"
        return small_talk(text)

    # --- customer identification ---------------------------------------------------------------

    def _identify(self, turn: Turn, flow: str, pending: str) -> tuple[Customer | Answer, str]:
        """The customer (or the question to ask instead) and the text left once its number is cut.

        The number comes from the message, else the conversation, else ``msg.data`` (when the
        household shared ``customer_number``). A bare ``100234`` counts only as an answer to
        "what is your customer number?".
        """
        raw = turn.msg.text
        found = _CUSTOMER_RE.search(raw)
        if found is None and pending == flow:
            found = _BARE_CUSTOMER_RE.search(raw)
        rest = raw
        if found is not None:
            number = f"EC-{found.group(1)}"
            rest = raw[: found.start()] + raw[found.end() :]
        else:
            number = _customer_number(
                str(turn.state.get("customer") or turn.msg.data.get("customer_number", ""))
            )
        if not number:
            turn.state["pending"] = flow
            return turn.say(
                "Quel est votre numéro client ? Il figure en haut de vos factures et dans votre"
                " espace client (format EC-123456).",
                "What is your customer number? It is at the top of your bills and in your online"
                " account (format EC-123456).",
            ), rest
        customer = self.customers.get(number)
        if customer is None:
            turn.state["pending"] = flow
            return turn.say(
                f"Je ne trouve pas le numéro client {number}. Pouvez-vous le vérifier ? Il figure"
                " en haut de vos factures (EC suivi de 6 chiffres, par exemple EC-123456).",
                f"I can't find customer number {number}. Could you check it? It is at the top of"
                " your bills (EC followed by 6 digits, for example EC-123456).",
            ), rest
        turn.state["customer"] = customer.number
        return customer, rest

    # --- meter readings --------------------------------------------------------------------------

    def _reading(self, turn: Turn, pending: str) -> Answer:
        found, rest = self._identify(turn, "reading_customer", pending)
        values = quantities(rest, turn.lang)
        stored = turn.state.pop("index", None)
        index = int(max(values)) if values else stored
        # After "is this unusual index right?": yes, or the same number again, confirms it.
        confirmed = pending == "reading_confirm" and (index == stored if values else is_yes(turn.text))
        if pending == "reading_confirm" and not values and not confirmed:
            index = None
        if isinstance(found, Answer):
            if index is not None:
                turn.state["index"] = index  # kept until we know whose meter it is
            return found
        customer, last = found, found.readings[-1]
        if index is not None:
            return self._record(turn, customer, int(index), confirmed=confirmed)
        turn.state["pending"] = "reading_index"
        fr, en = f"Merci, {customer.full_name}.", f"Thank you, {customer.full_name}."
        if pending == "reading_confirm":
            fr, en = "D'accord.", "All right."
        if pending == "reading_index":
            fr = "Je ne trouve pas d'index dans votre message : écrivez-le en chiffres (ex. 12 500)."
            en = "I can't find an index in your message: please write it in digits (e.g. 12,500)."
        return turn.say(
            f"{fr} Quel index affiche votre compteur (en kWh, les chiffres avant la virgule) ?"
            f" Votre dernier relevé, le {fmt_date(last.day, 'fr')}, indiquait"
            f" {fmt_kwh(last.index, 'fr')}.",
            f"{en} What index does your meter show (in kWh, the digits before the decimal"
            f" point)? Your last reading, on {fmt_date(last.day, 'en')}, was"
            f" {fmt_kwh(last.index, 'en')}.",
        )

    def _record(self, turn: Turn, customer: Customer, index: int, *, confirmed: bool) -> Answer:
        """Check ``index`` against the last validated reading, then record it."""
        last = customer.readings[-1]
        lang: Lang = turn.lang
        used, days = index - last.index, (turn.today - last.day).days
        if index < last.index:
            turn.state["pending"] = "reading_index"
            return turn.say(
                f"L'index {fmt_kwh(index, 'fr')} est inférieur à votre dernier relevé"
                f" ({fmt_kwh(last.index, 'fr')} le {fmt_date(last.day, 'fr')}) : un compteur ne"
                " recule pas. Vérifiez que vous lisez bien l'index de consommation (pas la"
                " puissance ni la date), sans les chiffres après la virgule, puis renvoyez-le."
                " Si votre compteur a été remplacé, un conseiller doit enregistrer le nouvel index.",
                f"The index {fmt_kwh(index, 'en')} is lower than your last reading"
                f" ({fmt_kwh(last.index, 'en')} on {fmt_date(last.day, 'en')}): a meter doesn't"
                " go backwards. Please check you are reading the consumption index (not the power"
                " or the date), without the digits after the decimal point, and send it again."
                " If your meter was replaced, an adviser needs to record the new index.",
            )
        if days > 0 and used / days > _UNUSUAL_KWH_PER_DAY and not confirmed:
            turn.state["pending"] = "reading_confirm"
            turn.state["index"] = index
            return turn.say(
                f"Avec l'index {fmt_kwh(index, 'fr')}, vous auriez consommé {fmt_kwh(used, 'fr')}"
                f" en {days} jours ({fmt_kwh(used / days, 'fr')} par jour), ce qui est très"
                " inhabituel pour un logement. Confirmez-vous cet index ? Sinon, envoyez-moi le"
                " bon.",
                f"With the index {fmt_kwh(index, 'en')}, you would have used"
                f" {fmt_kwh(used, 'en')} in {days} days ({fmt_kwh(used / days, 'en')} a day),"
                " which is very unusual for a home. Do you confirm this index? If not, send me"
                " the right one.",
                [("Oui, je confirme", "Yes, I confirm"), ("Non", "No")],
            )
        tariff = self.tariffs[customer.tariff]
        cost = round(used * tariff.price, 2)
        replaced = self.submitted.get(customer.number)
        self.submitted[customer.number] = Reading(turn.today, index)
        turn.state["last_reading"] = {
            "customer": customer.number,
            "index": index,
            "date": turn.today.isoformat(),
        }
        per_day = ""
        if days > 0:
            per_day = turn.pick(
                f" en {days} jours (environ {fmt_number(used / days, 'fr', 1)} kWh par jour)",
                f" over {days} days (about {fmt_number(used / days, 'en', 1)} kWh a day)",
            )
        correction = ""
        if replaced is not None and replaced.index != index:
            correction = turn.pick(
                f" Il remplace l'index {fmt_kwh(replaced.index, 'fr')} transmis plus tôt.",
                f" It replaces the index {fmt_kwh(replaced.index, 'en')} you sent earlier.",
            )
        return turn.say(
            f"C'est enregistré : index {fmt_kwh(index, lang)} au {fmt_date(turn.today, lang)}."
            f"{correction} Depuis votre dernier relevé du {fmt_date(last.day, lang)}"
            f" ({fmt_kwh(last.index, lang)}), vous avez consommé {fmt_kwh(used, lang)}{per_day},"
            f" soit environ {fmt_money(cost, lang)} au prix actuel de"
            f" {fmt_money(tariff.price, lang, 4)}/kWh (hors abonnement et taxes). Votre prochaine"
            " facture sera calculée sur cet index réel.",
            f"Recorded: index {fmt_kwh(index, lang)} on {fmt_date(turn.today, lang)}.{correction}"
            f" Since your last reading on {fmt_date(last.day, lang)} ({fmt_kwh(last.index, lang)}),"
            f" you have used {fmt_kwh(used, lang)}{per_day}, about {fmt_money(cost, lang)} at the"
            f" current price of {fmt_money(tariff.price, lang, 4)}/kWh (excluding subscription"
            " and taxes). Your next bill will use this actual reading.",
            [("Expliquer ma facture", "Explain my bill"), ("Merci !", "Thanks!")],
        )

    # --- bills ---------------------------------------------------------------------------------

    def _bill(self, turn: Turn, pending: str) -> Answer:
        customer, _ = self._identify(turn, "bill_customer", pending)
        if isinstance(customer, Answer):
            return customer
        lang: Lang = turn.lang
        latest, previous = customer.bills[-1], customer.bills[-2]
        lines = [
            turn.pick(
                f"Votre dernière facture {latest.number} (du {fmt_date(latest.start, lang)} au"
                f" {fmt_date(latest.end, lang)}, {latest.days} jours) s'élève à"
                f" {fmt_money(latest.total, lang)} TTC :",
                f"Your latest bill {latest.number} ({fmt_date(latest.start, lang)} to"
                f" {fmt_date(latest.end, lang)}, {latest.days} days) comes to"
                f" {fmt_money(latest.total, lang)} including VAT:",
            ),
            turn.pick(
                f"• abonnement : {fmt_money(latest.subscription, lang)}",
                f"• subscription: {fmt_money(latest.subscription, lang)}",
            ),
            turn.pick(
                f"• consommation : {fmt_kwh(latest.kwh, lang)} × {fmt_money(latest.price, lang, 4)}"
                f" = {fmt_money(latest.energy, lang)}",
                f"• consumption: {fmt_kwh(latest.kwh, lang)} × {fmt_money(latest.price, lang, 4)}"
                f" = {fmt_money(latest.energy, lang)}",
            ),
            turn.pick(
                f"• taxes et contributions (accise, CTA, TVA) : {fmt_money(latest.taxes, lang)}",
                f"• taxes and levies (excise, CTA, VAT): {fmt_money(latest.taxes, lang)}",
            ),
            "",
            *self._compare(turn, latest, previous, self.tariffs[customer.tariff]),
        ]
        return turn.say(
            "\n".join(lines),
            "\n".join(lines),
            [("Transmettre mon relevé", "Submit a meter reading"), ("Prix du kWh", "Price per kWh")],
        )

    @staticmethod
    def _compare(turn: Turn, latest: Bill, previous: Bill, tariff: Tariff) -> list[str]:
        """Why the latest bill differs from the previous one, largest causes first."""
        lang: Lang = turn.lang
        delta = round(latest.total - previous.total, 2)
        span = f"{fmt_date(previous.start, lang)} {pick(lang, 'au', 'to')} {fmt_date(previous.end, lang)}"
        before = turn.pick(
            f"{fmt_money(previous.total, lang)} de la facture précédente (du {span})",
            f"{fmt_money(previous.total, lang)} of the previous bill ({span})",
        )
        if abs(delta) < 0.02 * previous.total:
            return [
                turn.pick(
                    f"C'est stable par rapport aux {before}.", f"That is about the same as the {before}."
                )
            ]
        head = turn.pick(
            f"C'est {fmt_money(abs(delta), lang)} de {'plus' if delta > 0 else 'moins'} que les"
            f" {before}. Pourquoi :",
            f"That is {fmt_money(abs(delta), lang)} {'more' if delta > 0 else 'less'} than the"
            f" {before}. Why:",
        )
        causes = [_consumption_cause(turn, latest, previous)]
        if latest.price != previous.price:
            effect = round(latest.kwh * (latest.price - previous.price), 2)
            old, new = fmt_money(previous.price, lang, 4), fmt_money(latest.price, lang, 4)
            since = fmt_date(tariff.since, lang) if latest.price == tariff.price else ""
            causes.append(
                (
                    effect,
                    turn.pick(
                        f"• le prix du kWh est passé de {old} à {new}{' le ' + since if since else ''}"
                        f" : {_signed(effect, lang)}.",
                        f"• the price per kWh went from {old} to {new}{' on ' + since if since else ''}:"
                        f" {_signed(effect, lang)}.",
                    ),
                )
            )
        for effect, fr, en in (
            (latest.subscription - previous.subscription, "l'abonnement", "the subscription"),
            (
                latest.taxes - previous.taxes,
                "les taxes, qui suivent la consommation",
                "taxes, which follow consumption",
            ),
        ):
            amount = _signed(effect, lang)
            causes.append((effect, turn.pick(f"• {fr} : {amount}.", f"• {en}: {amount}.")))
        causes.sort(key=lambda cause: -abs(cause[0]))
        lines = [text for effect, text in causes if abs(effect) >= 0.01]
        return [head, *lines]

    # --- prices --------------------------------------------------------------------------------

    def _price(self, turn: Turn) -> Answer:
        lang: Lang = turn.lang
        tariff = self.tariffs["base"]
        since = fmt_date(tariff.since, lang)
        return turn.say(
            f"Notre {tariff.name_fr} est à {fmt_money(tariff.price, lang, 4)} le kWh hors taxes"
            f" depuis le {since} ({fmt_money(tariff.previous_price, lang, 4)} auparavant),"
            f" avec un abonnement de {fmt_money(tariff.monthly, lang)} par mois.",
            f"Our {tariff.name_en} is {fmt_money(tariff.price, lang, 4)} per kWh before tax since"
            f" {since} ({fmt_money(tariff.previous_price, lang, 4)} before), with a subscription"
            f" of {fmt_money(tariff.monthly, lang)} a month.",
            [("Expliquer ma facture", "Explain my bill")],
        )


def _consumption_cause(turn: Turn, latest: Bill, previous: Bill) -> tuple[float, str]:
    """How much the change in kWh weighs (at the old price), and a line saying why."""
    lang: Lang = turn.lang
    used = latest.kwh - previous.kwh
    effect = round(used * previous.price, 2)
    pct = round(100 * used / previous.kwh) if previous.kwh else 0
    season = ""
    if pct >= 10 and latest.winter and not previous.winter:
        season = turn.pick(
            " C'est habituel en hiver : chauffage, éclairage et eau chaude consomment davantage.",
            " That is usual in winter: heating, lighting and hot water use more.",
        )
    elif pct <= -10 and previous.winter and not latest.winter:
        season = turn.pick(
            " Les températures plus douces réduisent le chauffage.",
            " Milder weather means less heating.",
        )
    now, then = fmt_kwh(latest.kwh, lang), fmt_kwh(previous.kwh, lang)
    daily_now = fmt_number(latest.kwh / latest.days, lang, 1)
    daily_then = fmt_number(previous.kwh / previous.days, lang, 1)
    return effect, turn.pick(
        f"• vous avez consommé {fmt_kwh(abs(used), lang)} de {'plus' if used >= 0 else 'moins'}"
        f" ({now} contre {then}, {pct:+d} % ; {daily_now} kWh par jour contre {daily_then}) :"
        f" {_signed(effect, lang)}.{season}",
        f"• you used {fmt_kwh(abs(used), lang)} {'more' if used >= 0 else 'less'} ({now} against"
        f" {then}, {pct:+d}%; {daily_now} kWh a day against {daily_then}):"
        f" {_signed(effect, lang)}.{season}",
    )


def _signed(amount: float, lang: Lang) -> str:
    text = fmt_money(abs(amount), lang)
    return f"+{text}" if amount >= 0 else f"-{text}"


def _customer_number(given: str) -> str:
    """``EC-100234`` from what a household shared: ``ec100234``, ``100234``…; "" if nothing."""
    digits = re.sub(r"\D", "", given)
    return f"EC-{digits}" if len(digits) == 6 else given.strip().upper()
