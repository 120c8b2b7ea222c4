"""User-facing sentences of the hub, French first, English too."""

from __future__ import annotations

from typing import Literal

__all__ = ["Lang", "say", "scope_label"]

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
    "human_requested": {
        "fr": "Je demande un conseiller chez {brand}…",
        "en": "Asking {brand} for a person…",
    },
    "human_queued": {
        "fr": "Vous êtes n°{position} dans la file d'attente de {brand} (environ {minutes} min).",
        "en": "You are number {position} in {brand}'s queue (about {minutes} min).",
    },
    "human_joined": {
        "fr": "{agent}, de chez {brand}, a rejoint la conversation.",
        "en": "{agent} from {brand} has joined the conversation.",
    },
    "human_unavailable": {
        "fr": "Aucun conseiller de {brand} n'est disponible pour le moment.{when}{channels}"
        " Voulez-vous être rappelé·e ?",
        "en": "No one at {brand} is available right now.{when}{channels} Would you like a callback?",
    },
    "human_when": {"fr": " Ils seront là {next}.", "en": " They will be back {next}."},
    "human_channels": {
        "fr": " Vous pouvez aussi les joindre : {channels}.",
        "en": " You can also reach them: {channels}.",
    },
    "callback_recorded": {
        "fr": "C'est noté : {brand} vous rappellera dès que possible.",
        "en": "Noted: {brand} will call you back as soon as possible.",
    },
    "back_to_bot": {
        "fr": "Le conseiller a rendu la main à l'assistant de {brand}.",
        "en": "The agent handed the conversation back to {brand}'s assistant.",
    },
    "closed": {
        "fr": "La conversation avec {brand} est close.",
        "en": "The conversation with {brand} is closed.",
    },
    "rating_prompt": {
        "fr": "Comment s'est passé cet échange avec {brand} ? Notez de 1 à 5{parts}"
        " (un commentaire est bienvenu).",
        "en": "How did this conversation with {brand} go? Rate it from 1 to 5{parts} (a comment is welcome).",
    },
    "rating_parts": {
        "fr": " : l'assistant et le conseiller séparément",
        "en": ": the assistant and the person separately",
    },
    "offer_human": {
        "fr": "On dirait que ça coince. Voulez-vous parler à un conseiller de {brand} ?",
        "en": "This does not seem to be working. Would you like to talk to a person at {brand}?",
    },
    "thanks_rating": {
        "fr": "Merci ! Votre avis reste chez vous{shared}.",
        "en": "Thank you! Your rating stays at home{shared}.",
    },
    "rating_shared": {
        "fr": " et a été transmis à {brand}, comme vous l'avez permis",
        "en": " and was passed on to {brand}, as you allowed",
    },
    "data_request": {
        "fr": "{brand} demande {scope} : « {purpose} ». Le partager ?",
        "en": "{brand} asks for {scope}: “{purpose}”. Share it?",
    },
    "data_shared": {
        "fr": "Partagé avec {brand} : {scope} ({how}).",
        "en": "Shared with {brand}: {scope} ({how}).",
    },
    "data_refused": {
        "fr": "Refusé : {brand} ne recevra pas {scope}.",
        "en": "Refused: {brand} will not receive {scope}.",
    },
    "once": {"fr": "cette fois seulement", "en": "this time only"},
    "always": {"fr": "désormais toujours", "en": "from now on"},
}

SCOPE_LABELS: dict[str, dict[str, str]] = {
    "first_name": {"fr": "votre prénom", "en": "your first name"},
    "full_name": {"fr": "votre nom complet", "en": "your full name"},
    "email": {"fr": "votre adresse e-mail", "en": "your e-mail address"},
    "phone": {"fr": "votre numéro de téléphone", "en": "your phone number"},
    "postal_address": {"fr": "votre adresse postale", "en": "your postal address"},
    "customer_number": {"fr": "votre numéro client", "en": "your customer number"},
    "order_history": {"fr": "l'historique de vos commandes", "en": "your order history"},
    "location": {"fr": "votre localisation", "en": "your location"},
    "satisfaction": {"fr": "vos avis de satisfaction", "en": "your satisfaction ratings"},
}


def scope_label(scope: str, lang: str) -> str:
    labels = SCOPE_LABELS.get(scope, {})
    return labels.get(lang, labels.get("fr", scope))


def say(key: str, lang: str, **values: str) -> str:
    """The sentence ``key`` in ``lang`` (French if the language is unknown)."""
    texts = _TEXTS[key]
    return texts.get(lang, texts["fr"]).format(**values)
