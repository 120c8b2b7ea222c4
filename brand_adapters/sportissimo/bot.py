"""Sportissimo's scripted first-line service: order tracking, returns and store opening hours.

The demo data (``data.json``) is written as of its ``reference_date``. A bot built with an
explicit ``today`` reads the dates as written (for tests); by default it uses the real date
and moves every order date by the same offset, so the demo stays current.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from brand_adapters._text import (
    DAY_KEYS,
    Lang,
    Turn,
    day_name,
    find_day,
    fmt_date,
    fmt_money,
    is_cancel,
    is_no,
    is_yes,
    keywords,
    load_json,
    mentions,
    pick,
    small_talk,
)
from brand_adapters.sdk import Answer, Incoming

__all__ = ["DATA_PATH", "Order", "SportissimoBot", "Store"]

DATA_PATH = Path(__file__).parent / "data.json"

_RETURN_WORDS = keywords(
    "retour*, retourner, rembours*, renvoyer, rendre, echanger, echange, retractation, return*, "
    "refund*, send back, exchange"
)
_ORDER_WORDS = keywords(
    "commande*, colis, livraison, livre, livree, suivi, expedi*, ou en est, order*, parcel, "
    "package, delivery, deliver*, tracking, track, shipping, shipped, arrive*"
)
_HOURS_WORDS = keywords(
    "horaire*, heure*, ouvert*, ouvre, ouvrez, ferme, fermeture, hour*, open*, close*, closing"
)
_OPEN_WORDS = ("ouvert", "ouverte", "ouvre", "ouvrez", "open", "opened")
_CLOSED_WORDS = ("ferme", "fermee", "closed")
_STORE_WORDS = ("magasin*", "boutique*", "store*", "shop*")
_IN_STORE_WORDS = ("magasin*", "boutique", "sur place", "store*", "shop*", "in person")
_BY_POST_WORDS = keywords(
    "colis, poste, courrier, etiquette, relais, envoi, envoyer, renvoyer, post, parcel, mail, "
    "label, ship*, send"
)

_SUGGEST_MENU = (
    ("Où en est ma commande ?", "Where is my order?"),
    ("Faire un retour", "Return an item"),
    ("Horaires des magasins", "Store opening hours"),
)
_SUGGEST_METHOD = (("En magasin", "In store"), ("Par colis", "By parcel"))


@dataclass(frozen=True)
class Item:
    name_fr: str
    name_en: str
    qty: int
    price: float

    def label(self, lang: Lang) -> str:
        return f"{self.qty} × {pick(lang, self.name_fr, self.name_en)}"


@dataclass(frozen=True)
class Order:
    """One demo order; ``dates`` holds ``ordered_on``, ``shipped_on``, ``expected_on``…"""

    number: str
    status: str
    delivery: str
    items: tuple[Item, ...]
    dates: dict[str, date]
    carrier: str = ""
    tracking: str = ""
    store: str = ""

    @property
    def total(self) -> float:
        return round(sum(item.qty * item.price for item in self.items), 2)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Order:
        return cls(
            number=str(raw["number"]),
            status=str(raw["status"]),
            delivery=str(raw["delivery"]),
            items=tuple(
                Item(str(i["fr"]), str(i["en"]), int(i["qty"]), float(i["price"])) for i in raw["items"]
            ),
            dates={k: date.fromisoformat(v) for k, v in raw.items() if k.endswith(("_on", "_until"))},
            carrier=str(raw.get("carrier", "")),
            tracking=str(raw.get("tracking", "")),
            store=str(raw.get("store", "")),
        )


@dataclass(frozen=True)
class Store:
    id: str
    name: str
    address: str
    keywords: tuple[str, ...]
    hours: dict[str, tuple[str, ...]]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Store:
        return cls(
            id=str(raw["id"]),
            name=str(raw["name"]),
            address=str(raw["address"]),
            keywords=tuple(raw["keywords"]),
            hours={day: tuple(raw["hours"].get(day, [])) for day in DAY_KEYS},
        )

    def day_hours(self, weekday: int, lang: Lang) -> str:
        """``10h–12h30 et 14h–19h`` / ``10:00–12:30 and 14:00–19:00``, or ``fermé``/``closed``."""
        slots = self.hours[DAY_KEYS[weekday]]
        if not slots:
            return pick(lang, "fermé", "closed")
        return pick(lang, " et ", " and ").join(_slot(slot, lang) for slot in slots)

    def week(self, lang: Lang) -> str:
        """The weekly hours, consecutive days with the same hours grouped on one line."""
        lines: list[str] = []
        start = 0
        for end in range(7):
            if end < 6 and self.hours[DAY_KEYS[end + 1]] == self.hours[DAY_KEYS[start]]:
                continue
            first, last = day_name(start, lang), day_name(end, lang)
            days = first if end == start else pick(lang, f"du {first} au {last}", f"{first} to {last}")
            sep = " : " if lang == "fr" else ": "
            lines.append(f"• {days[0].upper()}{days[1:]}{sep}{self.day_hours(start, lang)}")
            start = end + 1
        return "\n".join(lines)


def _slot(slot: str, lang: Lang) -> str:
    opens, closes = slot.split("-")
    if lang == "en":
        return f"{opens}–{closes}"

    def fr(hhmm: str) -> str:
        hours, minutes = hhmm.split(":")
        return f"{int(hours)}h{'' if minutes == '00' else minutes}"

    return f"{fr(opens)}–{fr(closes)}"


@dataclass(frozen=True)
class _Context:
    """A turn plus how far the demo dates move to keep up with the real date."""

    turn: Turn
    shift: timedelta

    def on(self, order: Order, key: str) -> date:
        return order.dates[key] + self.shift

    def when(self, order: Order, key: str, *, weekday: bool = False) -> str:
        return fmt_date(self.on(order, key), self.turn.lang, weekday=weekday)


class SportissimoBot:
    """Answers Sportissimo customers in French or English; ``answer`` updates ``msg.state``."""

    def __init__(self, today: date | None = None, data_path: Path = DATA_PATH) -> None:
        data = load_json(data_path)
        self.reference_date = date.fromisoformat(data["reference_date"])
        self.return_days = int(data["returns"]["window_days"])
        self.refund_days = int(data["returns"]["refund_days"])
        self.orders = {o.number: o for o in map(Order.from_json, data["orders"])}
        self.stores = {s.id: s for s in map(Store.from_json, data["stores"])}
        self._today = today
        self._returns: dict[str, str] = {}

    # --- entry point -------------------------------------------------------------------------

    def answer(self, msg: Incoming) -> list[Answer]:
        """Answer one message; multi-turn flows keep ``pending`` and context in ``msg.state``."""
        if self._today is None:
            today = date.today()
            shift = today - self.reference_date
        else:
            today, shift = self._today, timedelta(0)
        ctx = _Context(Turn.of(msg, today), shift)
        intent = self._intent(ctx.turn.text)
        pending = msg.state.pop("pending", None)
        if isinstance(pending, str):
            resumed = self._resume(ctx, pending, intent)
            if resumed is not None:
                return [resumed]
        return [self._dispatch(ctx, intent)]

    def _intent(self, text: str) -> str | None:
        if mentions(text, _RETURN_WORDS):
            return "return"
        if _numbers(text, 4):
            return "order"
        if self._find_store(text) is not None:
            return "hours"
        if mentions(text, _ORDER_WORDS):
            return "order"
        if mentions(text, _HOURS_WORDS) or mentions(text, _STORE_WORDS):
            return "hours"
        return small_talk(text)

    def _dispatch(self, ctx: _Context, intent: str | None) -> Answer:
        handlers: dict[str, Callable[[_Context], Answer]] = {
            "order": self._order_status,
            "return": self._start_return,
            "hours": self._hours,
            "greeting": self._greet,
            "thanks": self._thanks,
            "goodbye": self._goodbye,
        }
        return handlers.get(intent or "", self._fallback)(ctx)

    def _greet(self, ctx: _Context) -> Answer:
        name = ctx.turn.msg.data.get("first_name", "")
        return ctx.turn.say(
            f"Bonjour{' ' + name if name else ''} ! Je suis l'assistant Sportissimo. Je peux suivre"
            " une commande, lancer un retour ou vous donner les horaires de nos magasins. Que"
            " puis-je faire pour vous ?",
            f"Hello{' ' + name if name else ''}! I'm the Sportissimo assistant. I can track an"
            " order, start a return or give you our stores' opening hours. How can I help?",
            _SUGGEST_MENU,
        )

    def _thanks(self, ctx: _Context) -> Answer:
        return ctx.turn.say(
            "Avec plaisir ! Autre chose pour votre commande ou nos magasins ?",
            "You're welcome! Anything else about an order or our stores?",
            _SUGGEST_MENU,
        )

    def _goodbye(self, ctx: _Context) -> Answer:
        return ctx.turn.say(
            "Merci d'avoir contacté Sportissimo, à bientôt et bon sport !",
            "Thank you for contacting Sportissimo. See you soon and enjoy your sport!",
        )

    def _fallback(self, ctx: _Context) -> Answer:
        return ctx.turn.say(
            "Je n'ai pas bien compris votre demande. Je peux :\n"
            "• suivre une commande (« Où en est ma commande ? »)\n"
            "• vous aider à retourner un article ou suivre un remboursement\n"
            "• vous donner les horaires de nos magasins de Lyon, Paris, Lille et Bordeaux.",
            "Sorry, I didn't quite get that. I can:\n"
            '• track an order ("Where is my order?")\n'
            "• help you return an item or follow a refund\n"
            "• give you the opening hours of our stores in Lyon, Paris, Lille and Bordeaux.",
            _SUGGEST_MENU,
        )

    def _resume(self, ctx: _Context, pending: str, intent: str | None) -> Answer | None:
        """Continue the flow the previous answer started, or ``None`` if the member moved on."""
        turn = ctx.turn
        if is_cancel(turn.text):
            return turn.say(
                "C'est noté, j'annule. Puis-je vous aider pour autre chose ?",
                "All right, I've cancelled that. Can I help with anything else?",
                _SUGGEST_MENU,
            )
        match pending:
            case "order_number" if intent in (None, "order"):
                return self._order_status(ctx)
            case "return_order" if intent in (None, "return") or _numbers(turn.text, 4):
                return self._resume_return_order(ctx)
            case "return_method" if "return_order" in turn.state:
                return self._return_method(ctx, intent)
            case "store" if intent in (None, "hours"):
                return self._hours(ctx)
        return None

    def _resume_return_order(self, ctx: _Context) -> Answer:
        """The member answers "which order to return?", or "return order 4822?" with yes/no."""
        turn = ctx.turn
        context = turn.state.get("order")
        if _numbers(turn.text, 4) or context not in self.orders:
            return self._start_return(ctx)
        if is_yes(turn.text):
            return self._return_order(ctx, self.orders[context])
        if is_no(turn.text):
            del turn.state["order"]
        turn.state["pending"] = "return_order"
        return turn.say(
            "D'accord. Quel est le numéro de la commande à retourner (4 chiffres) ?",
            "All right. What is the number of the order to return (4 digits)?",
        )

    # --- orders ------------------------------------------------------------------------------

    def _find_order(self, ctx: _Context, flow: str) -> Order | Answer:
        """The order the member means, or the question / explanation to send instead."""
        turn = ctx.turn
        candidates = _numbers(turn.text, 4)
        known = [n for n in candidates if n in self.orders]
        if known:
            return self.orders[known[0]]
        if candidates:
            turn.state["pending"] = "return_order" if flow == "return" else "order_number"
            return turn.say(
                f"Je ne trouve pas de commande n° {candidates[0]}. Pouvez-vous vérifier le numéro ?"
                " Il comporte 4 chiffres et figure dans l'e-mail de confirmation de commande"
                " (ainsi que dans votre espace client, rubrique « Mes commandes »).",
                f"I can't find an order number {candidates[0]}. Could you check the number? It has"
                " 4 digits and is in your order confirmation e-mail (and in your account, under"
                ' "My orders").',
            )
        if _ANY_NUMBER.search(turn.text):
            turn.state["pending"] = "return_order" if flow == "return" else "order_number"
            return turn.say(
                "Un numéro de commande Sportissimo comporte 4 chiffres (par exemple 1234) ; vous le"
                " trouverez dans l'e-mail de confirmation. Quel est le vôtre ?",
                "A Sportissimo order number has 4 digits (for example 1234); you'll find it in"
                " your confirmation e-mail. What is yours?",
            )
        history = [n for n in _numbers(turn.msg.data.get("order_history", ""), 4) if n in self.orders]
        if flow == "order" and len(history) == 1:
            return self.orders[history[0]]
        if flow == "order" and not history and turn.state.get("order") in self.orders:
            return self.orders[turn.state["order"]]
        turn.state["pending"] = "return_order" if flow == "return" else "order_number"
        return turn.say(
            "Quel est votre numéro de commande ? Il comporte 4 chiffres et figure dans l'e-mail"
            " de confirmation.",
            "What is your order number? It has 4 digits and is in your confirmation e-mail.",
            [(n, n) for n in history],
        )

    def _order_status(self, ctx: _Context) -> Answer:
        found = self._find_order(ctx, "order")
        if isinstance(found, Answer):
            return found
        order, turn = found, ctx.turn
        turn.state["order"] = order.number
        items = ", ".join(item.label(turn.lang) for item in order.items)
        total = fmt_money(order.total, turn.lang)
        text = turn.pick(
            f"Votre commande {order.number} du {ctx.when(order, 'ordered_on')}"
            f" {self._status_text(ctx, order)}\nContenu : {items} ({total}).",
            f"Your order {order.number} of {ctx.when(order, 'ordered_on')}"
            f" {self._status_text(ctx, order)}\nContents: {items} ({total}).",
        )
        follow_up = [("Horaires des magasins", "Store hours"), ("Merci !", "Thanks!")]
        if order.status == "delivered":
            follow_up.insert(0, ("Faire un retour", "Return an item"))
        return turn.say(text, text, follow_up)

    def _status_text(self, ctx: _Context, order: Order) -> str:
        turn, when = ctx.turn, ctx.when
        store = self.stores.get(order.store)
        match order.status:
            case "preparing" if store is not None:
                text = turn.pick(
                    f"est en cours de préparation. Elle sera prête à retirer dans notre magasin"
                    f" {store.name} ({store.address}) à partir du"
                    f" {when(order, 'expected_on', weekday=True)} ; vous recevrez un e-mail dès"
                    " qu'elle sera disponible.",
                    f"is being prepared. It will be ready for collection at our {store.name} store"
                    f" ({store.address}) from {when(order, 'expected_on', weekday=True)}; you'll get"
                    " an e-mail as soon as it is available.",
                )
            case "preparing":
                text = turn.pick(
                    "est en cours de préparation dans notre entrepôt. Livraison estimée le"
                    f" {when(order, 'expected_on', weekday=True)}.",
                    "is being prepared in our warehouse. Estimated delivery:"
                    f" {when(order, 'expected_on', weekday=True)}.",
                )
            case "shipped" | "in_transit":
                text = self._transit_text(ctx, order)
            case "ready" if store is not None:
                today = store.day_hours(turn.today.weekday(), turn.lang)
                text = turn.pick(
                    f"vous attend dans notre magasin {store.name} ({store.address}) depuis le"
                    f" {when(order, 'ready_on')}, jusqu'au {when(order, 'pickup_until')} inclus."
                    " Présentez l'e-mail de confirmation et une pièce d'identité."
                    f" Horaires d'aujourd'hui : {today}.",
                    f"is waiting for you at our {store.name} store ({store.address}) since"
                    f" {when(order, 'ready_on')}, until {when(order, 'pickup_until')} included."
                    f" Please bring the confirmation e-mail and an ID. Today's opening hours: {today}.",
                )
            case "delivered":
                deadline = ctx.on(order, "delivered_on") + timedelta(days=self.return_days)
                end = fmt_date(deadline, turn.lang)
                returns = (
                    turn.pick(
                        f"Vous pouvez retourner un article jusqu'au {end}.",
                        f"You can return items until {end}.",
                    )
                    if turn.today <= deadline
                    else turn.pick(
                        f"Le délai de retour de {self.return_days} jours a pris fin le {end}.",
                        f"The {self.return_days}-day return period ended on {end}.",
                    )
                )
                text = turn.pick(
                    f"a été livrée le {when(order, 'delivered_on')} par {order.carrier}. {returns}",
                    f"was delivered on {when(order, 'delivered_on')} by {order.carrier}. {returns}",
                )
            case "cancelled":
                text = turn.pick(
                    f"a été annulée le {when(order, 'cancelled_on')}. Le remboursement de"
                    f" {fmt_money(order.total, 'fr')} a été effectué le {when(order, 'refunded_on')}"
                    " sur votre moyen de paiement ; comptez 3 à 5 jours ouvrés pour le voir"
                    " apparaître sur votre compte.",
                    f"was cancelled on {when(order, 'cancelled_on')}. The refund of"
                    f" {fmt_money(order.total, 'en')} was made on {when(order, 'refunded_on')} to"
                    " your payment method; allow 3 to 5 working days for it to show on your account.",
                )
            case _:
                text = turn.pick("est en cours de traitement.", "is being processed.")
        return text

    def _transit_text(self, ctx: _Context, order: Order) -> str:
        turn, when = ctx.turn, ctx.when
        expected = when(order, "expected_on", weekday=True)
        tracking = turn.pick(f"numéro de suivi {order.tracking}", f"tracking number {order.tracking}")
        if order.status == "shipped":
            text = turn.pick(
                f"a été expédiée le {when(order, 'shipped_on')} avec {order.carrier} ({tracking}).",
                f"was shipped on {when(order, 'shipped_on')} with {order.carrier} ({tracking}).",
            )
        else:
            text = turn.pick(
                f"est en cours d'acheminement avec {order.carrier} ({tracking}), expédiée le"
                f" {when(order, 'shipped_on')}.",
                f"is on its way with {order.carrier} ({tracking}), shipped on {when(order, 'shipped_on')}.",
            )
        if ctx.on(order, "expected_on") < turn.today:
            return text + turn.pick(
                f" Elle devait arriver le {expected} et a pris du retard : si vous ne l'avez pas"
                " reçue d'ici 3 jours ouvrés, nous ouvrirons une enquête auprès du transporteur.",
                f" It was due on {expected} and is running late: if it hasn't arrived within"
                " 3 working days, we'll open an investigation with the carrier.",
            )
        return text + turn.pick(
            f" Livraison prévue le {expected} à votre domicile.",
            f" Expected delivery at your home on {expected}.",
        )

    # --- returns -----------------------------------------------------------------------------

    def _policy(self, turn: Turn) -> str:
        return turn.pick(
            f"Vous disposez de {self.return_days} jours après la livraison pour retourner un"
            " article : gratuitement dans l'un de nos magasins (remboursement immédiat), ou par"
            " colis avec une étiquette prépayée envoyée par e-mail (remboursement sous"
            f" {self.refund_days} jours après réception).",
            f"You have {self.return_days} days after delivery to return an item: free of charge"
            " in any of our stores (instant refund), or by parcel with a prepaid label sent by"
            f" e-mail (refund within {self.refund_days} days of receipt).",
        )

    def _start_return(self, ctx: _Context) -> Answer:
        turn = ctx.turn
        numbers = _numbers(turn.text, 4)
        context = self.orders.get(str(turn.state.get("order")))
        if not numbers and context is not None and context.status == "delivered":
            number = context.number
            turn.state["pending"] = "return_order"
            return turn.say(
                f"{self._policy(turn)} Souhaitez-vous retourner la commande {number} ? Sinon,"
                " indiquez-moi le numéro de la commande concernée.",
                f"{self._policy(turn)} Would you like to return order {number}? If not, tell me"
                " the order number.",
                [("Oui", "Yes"), ("Non", "No")],
            )
        if not _ANY_NUMBER.search(turn.text):
            turn.state["pending"] = "return_order"
            return turn.say(
                f"{self._policy(turn)} Pour lancer un retour, indiquez-moi le numéro de commande"
                " (4 chiffres, dans l'e-mail de confirmation).",
                f"{self._policy(turn)} To start a return, tell me the order number (4 digits,"
                " in your confirmation e-mail).",
            )
        found = self._find_order(ctx, "return")
        return found if isinstance(found, Answer) else self._return_order(ctx, found)

    def _return_order(self, ctx: _Context, order: Order) -> Answer:
        turn = ctx.turn
        turn.state["order"] = order.number
        existing = self._returns.get(order.number) or turn.state.get("returns", {}).get(order.number)
        if existing:
            return turn.say(
                f"Un retour est déjà ouvert pour la commande {order.number} : n° {existing}.",
                f"A return is already open for order {order.number}: number {existing}.",
            )
        if order.status == "cancelled":
            return turn.say(
                f"La commande {order.number} a été annulée le {ctx.when(order, 'cancelled_on')} :"
                f" rien à retourner, et {fmt_money(order.total, 'fr')} vous ont été remboursés le"
                f" {ctx.when(order, 'refunded_on')}.",
                f"Order {order.number} was cancelled on {ctx.when(order, 'cancelled_on')}: there"
                f" is nothing to return, and {fmt_money(order.total, 'en')} was refunded on"
                f" {ctx.when(order, 'refunded_on')}.",
            )
        if order.status == "ready":
            return turn.say(
                f"La commande {order.number} n'a pas encore été retirée. Si vous n'en voulez plus,"
                f" il suffit de ne pas la retirer : sans retrait d'ici le"
                f" {ctx.when(order, 'pickup_until')}, elle sera annulée et remboursée automatiquement.",
                f"Order {order.number} hasn't been collected yet. If you no longer want it, just"
                f" don't collect it: if it isn't picked up by {ctx.when(order, 'pickup_until')},"
                " it is cancelled and refunded automatically.",
            )
        if order.status != "delivered":
            return turn.say(
                f"La commande {order.number} n'est pas encore livrée, je ne peux donc pas encore"
                f" ouvrir de retour. Vous pourrez la retourner pendant {self.return_days} jours"
                " après la livraison, ou refuser le colis à la livraison : il nous reviendra et"
                " vous serez remboursé.",
                f"Order {order.number} hasn't been delivered yet, so I can't open a return for it"
                f" yet. You'll be able to return it for {self.return_days} days after delivery,"
                " or you can refuse the parcel on delivery: it comes back to us and you get"
                " a refund.",
                [("Où en est ma commande ?", "Where is my order?")],
            )
        deadline = ctx.on(order, "delivered_on") + timedelta(days=self.return_days)
        if turn.today > deadline:
            end = fmt_date(deadline, turn.lang)
            return turn.say(
                f"Je suis désolé : la commande {order.number}, livrée le"
                f" {ctx.when(order, 'delivered_on')}, ne peut plus être retournée, le délai de"
                f" {self.return_days} jours a pris fin le {end}. Si un article est défectueux, la"
                " garantie légale de conformité (2 ans) s'applique : rapportez-le en magasin"
                " avec votre facture.",
                f"I'm sorry: order {order.number}, delivered on {ctx.when(order, 'delivered_on')},"
                f" can no longer be returned; the {self.return_days}-day period ended on {end}."
                " If an item is faulty, the 2-year legal guarantee applies: bring it to a store"
                " with your invoice.",
            )
        turn.state["return_order"] = order.number
        turn.state["pending"] = "return_method"
        items = ", ".join(item.label(turn.lang) for item in order.items)
        end = fmt_date(deadline, turn.lang)
        return turn.say(
            f"La commande {order.number} ({items}) peut être retournée jusqu'au {end}. Préférez-vous"
            " la rapporter en magasin (gratuit, remboursement immédiat) ou la renvoyer par colis"
            " (étiquette prépayée) ?",
            f"Order {order.number} ({items}) can be returned until {end}. Would you rather bring"
            " it back to a store (free, instant refund) or send it by parcel (prepaid label)?",
            _SUGGEST_METHOD,
        )

    def _return_method(self, ctx: _Context, intent: str | None) -> Answer | None:
        turn = ctx.turn
        number = str(turn.state["return_order"])
        store = self._find_store(turn.text)
        in_store = store is not None or mentions(turn.text, _IN_STORE_WORDS)
        if not in_store and not mentions(turn.text, _BY_POST_WORDS):
            if intent not in (None, "return"):
                return None
            turn.state["pending"] = "return_method"
            return turn.say(
                f"Pour la commande {number}, souhaitez-vous un retour en magasin ou par colis ?",
                f"For order {number}, would you like to return it in store or by parcel?",
                _SUGGEST_METHOD,
            )
        order = self.orders[number]
        ref = f"R-{number}-1"
        self._returns[number] = ref
        turn.state.setdefault("returns", {})[number] = ref
        del turn.state["return_order"]
        deadline = fmt_date(ctx.on(order, "delivered_on") + timedelta(days=self.return_days), turn.lang)
        if in_store:
            where = turn.pick("dans le magasin Sportissimo de votre choix", "to any Sportissimo store")
            if store is not None:
                where = turn.pick(
                    f"au magasin {store.name} ({store.address})",
                    f"to our {store.name} store ({store.address})",
                )
            return turn.say(
                f"C'est fait : votre retour n° {ref} est enregistré. Rapportez les articles {where}"
                f" avant le {deadline} avec ce numéro ; le remboursement est fait sur place, sur"
                " votre moyen de paiement d'origine.",
                f"Done: your return number {ref} is registered. Bring the items {where} by"
                f" {deadline} with this number; you'll be refunded on the spot, to your original"
                " payment method.",
                [("Horaires des magasins", "Store hours")],
            )
        data = turn.msg.data
        to = turn.pick(" à l'adresse e-mail de votre compte", " to your account's e-mail address")
        if data.get("email"):
            to = turn.pick(f" à {data['email']}", f" to {data['email']}")
        elif data.get("postal_address"):
            to = turn.pick(
                f" par courrier au {data['postal_address']}", f" by post to {data['postal_address']}"
            )
        return turn.say(
            f"C'est fait : votre retour n° {ref} est enregistré. L'étiquette prépayée vous est"
            f" envoyée{to}. Déposez le colis en point relais avant le {deadline} ; vous serez"
            f" remboursé sous {self.refund_days} jours après réception.",
            f"Done: your return number {ref} is registered. The prepaid label is being sent{to}."
            f" Drop the parcel at a pick-up point by {deadline}; you'll be refunded within"
            f" {self.refund_days} days of receipt.",
        )

    # --- stores ------------------------------------------------------------------------------

    def _find_store(self, text: str) -> Store | None:
        return next((s for s in self.stores.values() if mentions(text, s.keywords)), None)

    def _hours(self, ctx: _Context) -> Answer:
        turn = ctx.turn
        store = self._find_store(turn.text)
        day = find_day(turn.text, turn.today)
        if day is None and isinstance(turn.state.get("day"), int):
            day = int(turn.state["day"])
        turn.state.pop("day", None)
        if store is None:
            names = [s.name for s in self.stores.values()]
            listing = ", ".join(names[:-1])
            turn.state["pending"] = "store"
            if day is not None:
                turn.state["day"] = day
            return turn.say(
                f"Nous avons {len(names)} magasins : {listing} et {names[-1]}. Lequel vous intéresse ?",
                f"We have {len(names)} stores: {listing} and {names[-1]}. Which one would you like?",
                [(n, n) for n in names],
            )
        week = store.week(turn.lang)
        if day is None:
            return turn.say(
                f"Horaires du magasin {store.name} ({store.address}) :\n{week}",
                f"Opening hours of our {store.name} store ({store.address}):\n{week}",
            )
        hours = store.day_hours(day, turn.lang)
        fr_day, en_day = day_name(day, "fr"), day_name(day, "en")
        is_open = bool(store.hours[DAY_KEYS[day]])
        # Answer a yes/no question with yes or no; "hours on Saturday?" gets a plain statement.
        asked = is_open if mentions(turn.text, _OPEN_WORDS) else not is_open
        yes_no = ""
        if mentions(turn.text, _OPEN_WORDS + _CLOSED_WORDS):
            yes_no = turn.pick("Oui, l" if asked else "Non, l", "Yes, o" if asked else "No, o")
        if not is_open:
            return turn.say(
                f"{yes_no or 'L'}e magasin {store.name} est fermé le {fr_day}. Ses horaires :\n{week}",
                f"{yes_no or 'O'}ur {store.name} store is closed on {en_day}s. Its opening hours:\n{week}",
            )
        return turn.say(
            f"{yes_no or 'L'}e magasin {store.name} ({store.address}) est ouvert le {fr_day} : {hours}.",
            f"{yes_no or 'O'}ur {store.name} store ({store.address}) is open on {en_day}s: {hours}.",
        )


_ANY_NUMBER = re.compile(r"\b\d+\b")


def _numbers(text: str, digits: int) -> list[str]:
    """Standalone numbers of exactly ``digits`` digits in ``text``, in order."""
    return re.findall(rf"\b\d{{{digits}}}\b", text)
