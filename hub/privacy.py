"""The privacy gate: every text that leaves the home goes through :func:`gate`.

``gate(text, granted, lang)`` finds the personal data in a member's free text
(French or English) and masks each datum the brand has no scope for. It
returns a :class:`GateResult` with the text to send, what was masked (so the
member can be shown it) and what was found but disclosed because the brand
holds the scope (for the disclosure ledger).

What is detected, and the scope each kind needs::

    kind            scope            how
    ──────────────  ───────────────  ─────────────────────────────────────────────
    email           email            address regex (dots, plus, sub-domains, IDN);
                                     also "jean [at] mail [dot] fr", "arobase"
    phone           phone            phonenumbers.PhoneNumberMatcher: FR (valid
                                     numbers in any layout, +33, 0033, (0), and
                                     every +CC / 00CC number), then GB, US, BE,
                                     CH national numbers written in their own
                                     grouping with a separator
    iban            payment          stdnum.iban (mod 97 and country format)
    card            payment          13–19 digits in whole groups, Luhn
                                     (stdnum.luhn), card-network prefixes
    nir             national_id      French social security number (stdnum.fr.nir),
                                     15 characters opening a run of digits
    postal_address  postal_address   number + street type + name ("12 rue de la
                                     Paix", "3 bis av. Foch", "221B Baker Street",
                                     "10 Downing St"), then complements (bât.,
                                     apt, étage, Suite), BP/CS, postcode + city,
                                     US state + ZIP, UK postcode; "BP 123",
                                     "PO Box 12"; "75011 Paris" alone (not after
                                     réf./commande/n°…); a UK postcode alone

The text is read through a one-for-one normalisation (Unicode spaces, dashes,
full-width digits, "＠" and "+" as ASCII), so spans index the original text.

``payment`` (IBAN, card) and ``national_id`` (NIR) are not scopes of the
protocol: no brand can be granted them today, so those data are **always
masked**, even if such a name is passed in ``granted``. Only the scopes in
:data:`GRANTABLE_SCOPES` (a subset of ``hub.protocol.Scope``) can lift a mask;
a future "payment" scope must be added there (and to the protocol) on purpose.

When findings overlap, the most specific wins, in this order: email, iban,
nir, card, phone, postal_address. What a less specific finding covered beyond
the winner is still masked (nothing is let through because of an overlap).

Placeholders (``lang`` "fr", or "en"; any other value gives French, as
``hub.i18n.say`` does): ``[e-mail masqué]`` / ``[email hidden]``,
``[téléphone masqué]`` / ``[phone number hidden]``, ``[IBAN masqué]`` /
``[IBAN hidden]``, ``[carte bancaire masquée]`` / ``[card number hidden]``,
``[n° de sécurité sociale masqué]`` / ``[social security number hidden]``,
``[adresse masquée]`` / ``[address hidden]``. None contains a digit or "@",
so gating a gated text masks nothing more.

A :class:`Finding` holds the kind, the span in the *original* text and the
scope it needs, never the datum itself: its ``repr`` is safe to log. The
value is ``text[finding.start:finding.end]`` for whoever holds the text.

Memory and speed matter (512 MB device): only ``phonenumbers`` and
``python-stdnum`` are used, no NLP model. Nothing is kept between calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from phonenumbers import Leniency, PhoneNumberMatcher
from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum.fr import nir as _nir

__all__ = ["GRANTABLE_SCOPES", "KINDS", "SCOPE_OF", "Finding", "GateResult", "Kind", "gate"]

Kind = Literal["email", "phone", "iban", "card", "nir", "postal_address"]

KINDS: Final[tuple[Kind, ...]] = ("email", "phone", "iban", "card", "nir", "postal_address")

SCOPE_OF: Final[dict[Kind, str]] = {
    "email": "email",
    "phone": "phone",
    "postal_address": "postal_address",
    "iban": "payment",
    "card": "payment",
    "nir": "national_id",
}
"""The scope a brand needs to receive each kind in clear."""

GRANTABLE_SCOPES: Final[frozenset[str]] = frozenset({"email", "phone", "postal_address"})
"""The only scopes that can lift a mask; "payment" and "national_id" are not among them."""

_PRIORITY: Final[dict[Kind, int]] = {
    "email": 0,
    "iban": 1,
    "nir": 2,
    "card": 3,
    "phone": 4,
    "postal_address": 5,
}

_PLACEHOLDERS: Final[dict[str, dict[Kind, str]]] = {
    "fr": {
        "email": "[e-mail masqué]",
        "phone": "[téléphone masqué]",
        "iban": "[IBAN masqué]",
        "card": "[carte bancaire masquée]",
        "nir": "[n° de sécurité sociale masqué]",
        "postal_address": "[adresse masquée]",
    },
    "en": {
        "email": "[email hidden]",
        "phone": "[phone number hidden]",
        "iban": "[IBAN hidden]",
        "card": "[card number hidden]",
        "nir": "[social security number hidden]",
        "postal_address": "[address hidden]",
    },
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One datum found in the original text: ``text[start:end]`` is the value."""

    kind: Kind
    start: int
    end: int
    scope: str


@dataclass(frozen=True)
class GateResult:
    """What :func:`gate` lets out: ``text``, plus what it masked and what it disclosed."""

    text: str
    masked: list[Finding]
    disclosed: list[Finding]


class _Span(NamedTuple):
    kind: Kind
    start: int
    end: int


def gate(text: str, granted: AbstractSet[str], lang: str = "fr") -> GateResult:
    """Mask in ``text`` every personal datum whose scope is not in ``granted``.

    ``granted`` is the set of scopes the member gave this brand (for example
    ``frozenset({"email"})``). IBANs, card numbers and NIRs are masked whatever
    it holds (see the module docstring). ``lang`` picks the placeholders.
    Findings in the result are in text order, with spans in ``text``.
    """
    if isinstance(granted, str):
        raise TypeError("granted must be a set of scope names, not a string")
    placeholders = _PLACEHOLDERS.get(lang, _PLACEHOLDERS["fr"])
    masked: list[Finding] = []
    disclosed: list[Finding] = []
    work = text.translate(_NORMALISE)  # same length: spans hold in both
    for span in _resolve(work, _candidates(work)):
        scope = SCOPE_OF[span.kind]
        finding = Finding(span.kind, span.start, span.end, scope)
        if scope in GRANTABLE_SCOPES and scope in granted:
            disclosed.append(finding)
        else:
            masked.append(finding)
    parts: list[str] = []
    pos = 0
    for finding in masked:
        parts.append(text[pos : finding.start])
        parts.append(placeholders[finding.kind])
        pos = finding.end
    parts.append(text[pos:])
    return GateResult("".join(parts), masked, disclosed)


def _words(words: str) -> frozenset[str]:
    return frozenset(words.split())


def _normalisation() -> dict[int, str]:
    """One character for one: Unicode spaces, dashes and full-width digits, @ and + as ASCII."""
    table = dict.fromkeys((0x09, 0xA0, 0x1680, 0x202F, 0x205F, 0x3000, *range(0x2000, 0x200B)), " ")
    table.update(dict.fromkeys((*range(0x2010, 0x2016), 0x2212, 0xFE63, 0xFF0D), "-"))
    table.update({0xFF10 + digit: str(digit) for digit in range(10)})
    table.update({0xFF20: "@", 0xFF0B: "+", 0xFE6B: "@"})
    return table


_NORMALISE: Final = _normalisation()


# ── overlaps ────────────────────────────────────────────────────────────────


def _resolve(text: str, spans: list[_Span]) -> list[_Span]:
    """Non-overlapping spans: same-kind overlaps merged, then the most specific kind wins.

    What a less specific span covered outside the winners stays masked, as a
    shorter span of its own kind (when it still holds a letter or a digit).
    """
    merged: list[_Span] = []
    for kind in KINDS:
        for span in sorted(s for s in spans if s.kind == kind):
            if merged and merged[-1].kind == kind and span.start < merged[-1].end:
                last = merged[-1]
                merged[-1] = _Span(kind, last.start, max(last.end, span.end))
            else:
                merged.append(span)
    merged.sort(key=lambda s: (_PRIORITY[s.kind], -(s.end - s.start), s.start))
    taken: list[_Span] = []
    for span in merged:
        pieces = _subtract(span.start, span.end, taken)
        if pieces == [(span.start, span.end)]:
            taken.append(span)
            continue
        for start, end in pieces:
            piece = _trimmed(text, start, end)
            if piece is not None:
                taken.append(_Span(span.kind, *piece))
    taken.sort(key=lambda s: s.start)
    return taken


def _subtract(start: int, end: int, taken: list[_Span]) -> list[tuple[int, int]]:
    pieces = [(start, end)]
    for other in taken:
        kept: list[tuple[int, int]] = []
        for s, e in pieces:
            if other.end <= s or other.start >= e:
                kept.append((s, e))
                continue
            if s < other.start:
                kept.append((s, other.start))
            if other.end < e:
                kept.append((other.end, e))
        pieces = kept
    return pieces


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    return (start, end) if start < end else None


def _candidates(text: str) -> list[_Span]:
    spans: list[_Span] = []
    if "@" in text or _OBFUSCATED_HINT.search(text):
        spans.extend(_emails(text))
    digits = sum(ch.isdigit() for ch in text)
    if digits >= 7:
        spans.extend(_phones(text))
    if digits >= 13:
        spans.extend(_cards(text))
        spans.extend(_nirs(text))
    spans.extend(_ibans(text))  # a Swiss or Italian IBAN can hold as few as 11 digits
    spans.extend(_addresses(text))
    return spans


# ── e-mail ──────────────────────────────────────────────────────────────────

_ATEXT: Final = r"[\w!#$%&'*+/=?^`{|}~-]"
_LOCAL: Final = rf"(?<![\w!#$%&'*+/=?^`{{|}}~-]){_ATEXT}+(?:\.{_ATEXT}+)*"
_LABEL: Final = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_TLD: Final = r"(?:[^\W\d_]{2,63}|[xX][nN]--[A-Za-z0-9-]{1,59})"
_EMAIL_RE: Final = re.compile(rf"{_LOCAL}(?:@|\s@\s)(?:{_LABEL}\.)+{_TLD}(?![\w-])")

_OBF_AT: Final = r"(?:\s*[\[({<]\s*(?:at|arobase|@)\s*[\])}>]\s*|\s+(?:arobase|at)\s+)"
_OBF_DOT: Final = r"(?:\s*[\[({<]\s*(?:dot|point)\s*[\])}>]\s*|\s+(?:dot|point)\s+|\.)"
_OBF_TLD: Final = r"(?:com|fr|net|org|eu|io|co|uk|de|be|ch|lu|ca|us|es|it|nl|info|biz|me)"
_OBFUSCATED_RE: Final = re.compile(
    rf"{_LOCAL}(?P<at>(?i:{_OBF_AT}))(?P<domain>(?:{_LABEL}(?i:{_OBF_DOT}))+)(?i:{_OBF_TLD})(?![\w-])"
)
# "jdoe at gmail dot com" is an address, "be at home dot com" is not: a bare " at "
# needs an address-like local part or a well-known mail domain.
_MAIL_DOMAINS: Final = _words(
    "gmail googlemail yahoo hotmail outlook live msn aol icloud me proton protonmail gmx orange wanadoo "
    "free sfr neuf laposte bbox numericable club-internet btinternet sky"
)
_OBFUSCATED_HINT: Final = re.compile(r"(?i)\b(?:at|arobase)\b")


def _emails(text: str) -> Iterator[_Span]:
    for m in _EMAIL_RE.finditer(text):
        yield _Span("email", m.start(), m.end())
    for m in _OBFUSCATED_RE.finditer(text):
        if m.group("at").strip().lower() == "at":
            local = text[m.start() : m.start("at")]
            first_label = re.split(r"[\s.\[({<]", m.group("domain"), maxsplit=1)[0].lower()
            if not re.search(r"[._+\-0-9]", local) and first_label not in _MAIL_DOMAINS:
                continue
        yield _Span("email", m.start(), m.end())


# ── phone ───────────────────────────────────────────────────────────────────

# FR first, any valid number (this pass also finds every "+CC …" and "00CC …"
# number); then national formats of neighbours and of English speakers, only
# when written with the country's own grouping and at least one separator
# (a bare run of digits there is more often an order number than a phone).
_PHONE_PASSES: Final[tuple[tuple[str, int], ...]] = (
    ("FR", Leniency.VALID),
    ("GB", Leniency.EXACT_GROUPING),
    ("US", Leniency.EXACT_GROUPING),
    ("BE", Leniency.EXACT_GROUPING),
    ("CH", Leniency.EXACT_GROUPING),
)
_BRACKETS: Final = re.compile(r"[()\[\]{}]")
_PHONE_SEPARATORS: Final = frozenset(" -.()/")


def _phones(text: str) -> Iterator[_Span]:
    passes = list(_PHONE_PASSES)
    if _BRACKETS.search(text):
        # a stray bracket next to a number makes the matcher drop it: read the
        # text once more with brackets blanked (same length, same offsets)
        passes.append(("FR*", Leniency.VALID))
    for region, leniency in passes:
        source = _BRACKETS.sub(" ", text) if region == "FR*" else text
        for match in PhoneNumberMatcher(source, region.rstrip("*"), leniency=leniency):
            raw = match.raw_string
            if not region.startswith("FR") and (
                raw.lstrip("(").startswith(("+", "00")) or not _PHONE_SEPARATORS.intersection(raw)
            ):
                continue
            yield _Span("phone", *_unbracketed(raw, match.start, match.end))


def _unbracketed(raw: str, start: int, end: int) -> tuple[int, int]:
    """Leave out an unmatched bracket at either end: in "(06 12 34 56 78)" it belongs to the sentence."""
    for opener, closer in ("()", "[]", "{}"):
        if raw.startswith(opener) and raw.count(opener) > raw.count(closer):
            start += 1
        if raw.endswith(closer) and raw.count(closer) > raw.count(opener):
            end -= 1
    return start, end


# ── IBAN, card, NIR ─────────────────────────────────────────────────────────

_SEP: Final = "[ .\\-]"  # the text is normalised: one kind of space, one kind of dash
_IBAN_START: Final = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}")
_ALNUM_GROUP: Final = re.compile(rf"{_SEP}?([A-Za-z0-9]+)")
_DIGIT_RUN: Final = re.compile(rf"(?<![A-Za-z0-9+])[0-9]+(?:{_SEP}[0-9]+)*")
_NIR_RUN: Final = re.compile(rf"(?<![A-Za-z0-9+])[0-9][0-9ABab]*(?:{_SEP}[0-9][0-9ABab]*)*")
_GROUP: Final = re.compile(r"[0-9A-Za-z]+")


def _ibans(text: str) -> Iterator[_Span]:
    for m in _IBAN_START.finditer(text):
        start = m.start()
        ends: list[tuple[int, str]] = []
        compact = ""
        pos = start
        while True:
            g = _ALNUM_GROUP.match(text, pos) if pos > start else _GROUP.match(text, pos)
            if g is None:
                break
            compact += g.group(g.lastindex or 0)
            if len(compact) > 34:
                break
            pos = g.end()
            ends.append((pos, compact))
        for end, candidate in reversed(ends):
            if len(candidate) >= 15 and _iban.is_valid(candidate):
                yield _Span("iban", start, end)
                break


def _groups(run: re.Match[str]) -> list[tuple[int, int, str]]:
    base = run.start()
    return [(base + g.start(), base + g.end(), g.group()) for g in _GROUP.finditer(run.group())]


def _windows(
    groups: list[tuple[int, int, str]], min_len: int, max_len: int
) -> Iterator[tuple[int, int, str]]:
    """Contiguous runs of whole groups whose joined length is in [min_len, max_len], longest first."""
    found: list[tuple[int, int, str]] = []
    for i in range(len(groups)):
        joined = ""
        for j in range(i, len(groups)):
            joined += groups[j][2]
            if len(joined) > max_len:
                break
            if len(joined) >= min_len:
                found.append((groups[i][0], groups[j][1], joined))
    found.sort(key=lambda w: (-(w[1] - w[0]), w[0]))
    return iter(found)


def _card_prefix_ok(number: str) -> bool:
    """Issuer prefixes by length: Visa, Mastercard, Amex, Diners, Discover, JCB, UnionPay, Maestro."""
    n = len(number)
    if n == 13:
        return number[0] == "4"
    if n == 14:
        return number.startswith("36")
    if n == 15:
        return number.startswith(("34", "37"))
    if n == 16:
        return number[0] in "23456"
    return number[0] in "456"


def _cards(text: str) -> Iterator[_Span]:
    for run in _DIGIT_RUN.finditer(text):
        used: list[tuple[int, int]] = []
        for start, end, number in _windows(_groups(run), 13, 19):
            if any(start < e and s < end for s, e in used):
                continue
            if _card_prefix_ok(number) and _luhn.is_valid(number):
                used.append((start, end))
                yield _Span("card", start, end)


def _nirs(text: str) -> Iterator[_Span]:
    for run in _NIR_RUN.finditer(text):
        # a NIR opens its run of digits: in "5018 7311 1970 6661 379" (a card)
        # the last fifteen digits are no NIR, whatever their checksum says
        groups = _groups(run)
        joined = ""
        for _, end, group in groups:
            joined += group
            if len(joined) >= 15:
                if len(joined) == 15 and joined[0] in "1278" and _nir.is_valid(joined.upper()):
                    yield _Span("nir", groups[0][0], end)
                break


# ── postal address ──────────────────────────────────────────────────────────


def _alternation(words: AbstractSet[str]) -> str:
    return "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))


# French street types come before the name ("rue de la Paix"). The weak ones
# are also ordinary words ("3 cours de yoga", "2 place de parking"): they need
# a capitalised name or a postcode after them.
_FR_STRONG: Final = _words(
    "rue avenue av ave boulevard bd bld bvd blvd impasse imp allée allee allées allees chemin quai "
    "route rte faubourg fbg chaussée chaussee ruelle venelle sentier esplanade rond-point lotissement "
    "lieu-dit lieudit hameau cité traverse montée montee promenade parvis corniche"
)
_FR_WEAK: Final = _words(
    "place pl cours mail clos domaine parc square sq passage voie villa résidence residence cour zone "
    "za zi zac galerie"
)
_FR_STREET: Final = re.compile(
    r"(?<![\w])(?:(?P<num>\d{1,4}(?:\s?(?:bis|ter|quater|[A-Da-d])(?![\w]))?"
    r"(?:\s?[-/]\s?\d{1,4}(?:\s?(?:bis|ter))?)?)\s*,?\s+(?P<of>(?:de\s+la|du|de\s+l['’]?)\s*)?)?"
    r"(?P<adjective>(?i:grande?|petite?|vieille|vieux|haute|basse|nouvelle|ancienne)\s+)?"
    rf"(?P<type>(?i:{_alternation(_FR_STRONG | _FR_WEAK | {'r'})}))(?P<dot>\.)?(?=[\s,]|$)"
)

# English street types come after the name ("Baker Street").
_EN_STRONG: Final = _words("street st road rd avenue ave lane ln drive dr boulevard blvd highway hwy")
_EN_WEAK: Final = _words(
    "way close court ct place pl crescent terrace gardens square sq row hill grove park mews walk "
    "parade circle parkway pkwy trail loop plaza quay wharf rise vale heights yard embankment"
)
_EN_NAME_WORD: Final = r"(?:[^\W\d_][\w'’.\-]*|\d{1,3}(?:st|nd|rd|th))"
_EN_STREET: Final = re.compile(
    r"(?<![\w])(?P<num>\d{1,5}[A-Za-z]?(?:\s?[-/]\s?\d{1,5}[A-Za-z]?)?),?\s+"
    rf"(?P<name>(?:[NSEW]\.?\s+)?(?:{_EN_NAME_WORD}\s+){{0,3}}?{_EN_NAME_WORD})\s+"
    rf"(?P<type>(?i:{_alternation(_EN_STRONG | _EN_WEAK)}))(?![\w])(?P<dot>\.)?"
    r"(?P<direction>\s+(?:NW|NE|SW|SE|N|S|E|W)(?![\w]))?"
)
_EN_ABBREVIATIONS: Final = _words("st rd ave ln dr blvd hwy ct pl sq pkwy")
_EN_PRODUCT_WORDS: Final = _words("hard flash usb ssd disk thumb external cd dvd test disc")
_EN_CUES: Final = _words(
    "at to live lives living address located moved move deliver delivered delivery ship shipped send "
    "sent is from in on"
)

_PARTICLES: Final = _words(
    "de du des la le les l' d' l’ d’ aux au à en sur sous lès lez et saint sainte st ste of the"
)
_STOP: Final = _words(
    "depuis pour avec sans mais merci svp stp car donc puis avant après apres jusqu jusqu' chez dans "
    "ou où est sont qui que quand si je j' tu il elle on nous vous ils elles mon ma mes ton ta tes "
    "votre vos notre nos son sa ses ce cet cette ces pas ne n' c' s' y était sera serait a ai avez "
    "avons ont demain aujourd hier soir matin midi entre vers près pres bonjour bonsoir cordialement "
    "bonne bon voici voilà voila pouvez pourriez pouvons peux peut veuillez je vous and but please "
    "thanks thank you your my our their his her from since with by for is was are were will would can "
    "could should tomorrow today yesterday hi hello regards cheers best kind i we they he she it this "
    "that there here when if or not no yes ok okay then also et non"
)
_ELISIONS: Final = _words("l' d' l’ d’")
_CITY_PARTICLES: Final = _words("de du des la le les l' d' l’ d’ aux sur sous en lès lez upon")
_MONTHS: Final = _words(
    "janvier février fevrier mars avril mai juin juillet août aout septembre octobre novembre "
    "décembre decembre"
)
_TOKEN: Final = re.compile(r" +([^\s,;:!?()\[\]{}«»\"/]+)")
_FR_POSTCODE: Final = re.compile(r"\s*[,-]?\s*(?P<pc>\d{5}|\d{2} \d{3}|\d{4})(?= )")
_FR_COMPLEMENT: Final = re.compile(
    r"(?i:\s*,?\s*(?:bât(?:iment)?|bat|appt?|appartement|apt|étage|etage|escalier|esc|porte|"
    r"résidence|residence|entrée|entree)\.?\s*(?:n°\s*)?[A-Za-z0-9]{1,4}(?![\w])"
    r"|\s*,?\s*\d{1,2}(?:e|er|ème|eme|è)\s+(?:étage|etage))"
)
_POBOX: Final = re.compile(r"(?<![\w])(?:BP|B\.P\.|CS|TSA|(?i:P\.?\s?O\.?\s?Box))\s?\d{1,6}(?![\w])")
_POBOX_TAIL: Final = re.compile(r"\s*,?\s*(?:BP|B\.P\.|CS|TSA)\s?\d{1,6}(?![\w])")
_CEDEX: Final = re.compile(r"(?i:\s+cedex)(?:\s?\d{1,2}(?![\w]))?")
_ARRONDISSEMENT: Final = re.compile(r"\s+\d{1,2}(?:e|er|ème|eme|è)(?![\w])")
_COUNTRY: Final = re.compile(r"\s*[,-]?\s*(?:(?i:france|united kingdom|belgique|suisse)|UK|USA|US)(?![\w])")
_UK_POSTCODE: Final = r"(?:[A-Z]{1,2}[0-9][A-Z0-9]?\s?[0-9][ABD-HJLNP-UW-Z]{2})"
_UK_POSTCODE_ALONE: Final = re.compile(r"(?<![\w])[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][ABD-HJLNP-UW-Z]{2}(?![\w])")
_EN_UNIT: Final = re.compile(
    r"(?:,?\s+(?i:apt|apartment|suite|ste|unit|flat|fl)\.?\s*#?[A-Za-z0-9-]{1,6}(?![\w])|,?\s+#\d{1,5}(?![\w]))"
)
_EN_CODE: Final = re.compile(rf"\s*,?\s*(?:{_UK_POSTCODE}|[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?)(?![\w])")
_CITY_WORD: Final = re.compile(r" +([^\W\d_](?:[^\W\d_]|['’])*(?:-(?:[^\W\d_]|['’])+)*)(?![\w])")
_STANDALONE_PC: Final = re.compile(r"(?<![\w,.\-/])(?P<pc>\d{5})(?= )")
_COMMA: Final = re.compile(r"\s*,")
# A lone "75011 Paris" is an address, "réf. 40123 Noir" is not.
_IDENTIFIER_WORDS: Final = _words(
    "réf ref référence reference commande cmd n° no nº numéro numero # article produit colis ticket "
    "dossier facture client contrat code sku order invoice item model modèle lot série serie id"
)


def _addresses(text: str) -> Iterator[_Span]:
    yield from _fr_streets(text)
    yield from _en_streets(text)
    for m in _POBOX.finditer(text):
        end = max(_fr_tail(text, m.end())[0], _en_tail(text, m.end())[0])
        yield _Span("postal_address", m.start(), end)
    for m in _STANDALONE_PC.finditer(text):
        pc = m.group("pc")
        previous = _previous_word(text, m.start()).rstrip(".:")
        if _fr_postcode_ok(pc) and previous not in _IDENTIFIER_WORDS and not previous.startswith("#"):
            end, has_city = _city(text, m.end("pc"), capitalised=True)
            if has_city:
                yield _Span("postal_address", m.start("pc"), end)
    for m in _UK_POSTCODE_ALONE.finditer(text):
        yield _Span("postal_address", m.start(), m.end())


_LAST_WORD: Final = re.compile(r"(\S+)\s*$")


def _previous_word(text: str, pos: int) -> str:
    """The word just before ``pos``, lowercased ("" at the start)."""
    m = _LAST_WORD.search(text, max(0, pos - 40), pos)
    return m.group(1).lower() if m is not None else ""


def _fr_postcode_ok(pc: str) -> bool:
    department = int(pc[:2])
    return 1 <= department <= 95 or department in (97, 98)


def _fr_streets(text: str) -> Iterator[_Span]:
    for m in _FR_STREET.finditer(text):
        street_type = m.group("type").lower()
        if street_type == "r" and not m.group("dot"):
            continue  # "12 r. de la Paix", but a lone "r" is anything
        if m.group("adjective") and not m.group("num"):
            continue
        name = _fr_name(text, m.end())
        if name is None:
            # "16 Grande Rue": the adjective is the name
            if not (m.group("adjective") and street_type == "rue"):
                continue
            name = (m.end(), True)
        name_end, capitalised = name
        end, has_postcode = _fr_tail(text, name_end)
        en_end, has_code = _en_tail(text, name_end)
        if has_code and en_end > end:
            end = en_end
        has_number = m.group("num") is not None
        weak = street_type in _FR_WEAK or street_type == "r"
        if m.group("of") and weak:
            continue  # "au 5 de la rue Mouffetard" yes, "3 du cours de danse" no
        if has_number and (has_postcode or not weak or capitalised):
            yield _Span("postal_address", m.start(), end)
        elif not has_number and has_postcode:
            yield _Span("postal_address", m.start("type"), end)


def _fr_name(text: str, pos: int) -> tuple[int, bool] | None:
    """End of the street name after the street type, and whether it is capitalised."""
    roles: list[tuple[str, int]] = []  # role (p particle, n number, C/c content word) and end
    previous = ""
    for _ in range(8):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        token = m.group(1)
        core = token.rstrip(".")
        role = _name_role(core, previous, capitalised_seen=any(r == "C" for r, _ in roles))
        if role is None:
            break
        roles.append((role, m.start(1) + len(core)))
        previous = core.lower()
        pos = m.end()
        if token.endswith(".") and len(core) > 3:
            break  # end of sentence, not an abbreviation like "St."
    while roles and roles[-1][0] == "p":
        roles.pop()
    contents = [r for r, _ in roles if r in "Cc"]
    if not contents:
        return None
    return roles[-1][1], contents[0] == "C"


def _name_role(core: str, previous: str, *, capitalised_seen: bool) -> str | None:
    """The role of one word of a French street name, or None where the name stops."""
    lower = core.lower()
    rest = core[2:] if re.match(r"(?i)[ld]['’]", core) else core
    if not rest:
        return None
    if lower in _PARTICLES:
        return "p"
    if rest.isdigit():  # "rue du 8 Mai 1945", "avenue du 11 Novembre"
        year = previous in _MONTHS and len(rest) == 4
        day = previous in {"du", "de", "des"} and len(rest) <= 2
        return "n" if year or day else None
    if not rest[0].isalpha() or len(rest) < 2 or lower in _STOP or rest.lower() in _STOP:
        return None  # a lone letter is a building or an aisle ("allée B"), not a street name
    if rest[0].isupper():
        return "C"
    # "rue des Martyrs en favori": a lowercase word after a capitalised name ends it
    return None if capitalised_seen else "c"


def _fr_tail(text: str, pos: int) -> tuple[int, bool]:
    """End of what follows a street (complements, BP, postcode and city), and whether a postcode was seen."""
    for _ in range(3):
        m = _FR_COMPLEMENT.match(text, pos)
        if m is None:
            break
        pos = m.end()
    m = _POBOX_TAIL.match(text, pos)
    if m is not None:
        pos = m.end()
    m = _FR_POSTCODE.match(text, pos)
    if m is not None:
        end, has_city = _city(text, m.end("pc"), capitalised=False)
        if has_city:
            pos = end
            c = _CEDEX.match(text, pos)
            if c is not None:
                pos = c.end()
            a = _ARRONDISSEMENT.match(text, pos)
            if a is not None:
                pos = a.end()
            c = _COUNTRY.match(text, pos)
            if c is not None:
                pos = c.end()
            return pos, True
    m = _COMMA.match(text, pos)
    if m is not None:
        end, has_city = _city(text, m.end(), capitalised=True)
        if has_city:
            return end, False
    return pos, False


def _city(text: str, pos: int, *, capitalised: bool) -> tuple[int, bool]:
    """End of a city name starting after ``pos`` (at most five words), and whether there is one.

    ``capitalised``: every word but particles must start with a capital. Even
    when not, a lowercase word after a capitalised one ends the city.
    """
    words: list[tuple[str, int]] = []
    capital_seen = False
    end = pos
    for _ in range(5):
        m = _CITY_WORD.match(text, end)
        if m is None:
            break
        word = m.group(1)
        lower = word.lower()
        if lower == "cedex" or lower in _STOP or (lower[2:] in _STOP and lower[:2] in _ELISIONS):
            break
        if lower not in _CITY_PARTICLES and not word[0].isupper() and (capitalised or capital_seen):
            break  # "75002 Paris et non …", "London, please …"
        capital_seen = capital_seen or word[0].isupper()
        words.append((lower, m.end(1)))
        end = m.end(1)
    while words and words[-1][0] in _CITY_PARTICLES:
        words.pop()
    if not words or words[0][0] in _CITY_PARTICLES - {"le", "la", "les"}:
        return pos, False
    return words[-1][1], True


def _en_streets(text: str) -> Iterator[_Span]:
    for m in _EN_STREET.finditer(text):
        street_type = m.group("type").lower()
        words = m.group("name").split()
        lowers = [w.lower().rstrip(".") for w in words]
        if any(w in _STOP for w in lowers):
            continue
        capitalised = all(w[0].isupper() or w[0].isdigit() for w in words)
        if street_type in {"drive", "dr"} and any(w in _EN_PRODUCT_WORDS for w in lowers):
            continue
        street_end = m.end()
        if m.group("dot") and not m.group("direction") and street_type not in _EN_ABBREVIATIONS:
            street_end -= 1  # "19 Station Road." ends a sentence
        end, has_tail = _en_tail(text, street_end)
        if street_type in _EN_WEAK:
            cue = _previous_word(text, m.start()).strip(",:;") in _EN_CUES
            if not capitalised or not (has_tail or cue):
                continue
        elif not capitalised and len(words) > 2:
            continue
        yield _Span("postal_address", m.start(), end)


def _en_tail(text: str, pos: int) -> tuple[int, bool]:
    """End of what follows an English street (unit, city, state and ZIP or UK postcode)."""
    seen = False
    m = _EN_UNIT.match(text, pos)
    if m is not None:
        pos = m.end()
    code = _EN_CODE.match(text, pos)
    if code is not None:
        return _country_end(text, code.end()), True
    comma = _COMMA.match(text, pos)
    city_start = comma.end() if comma is not None else pos
    end, has_city = _city(text, city_start, capitalised=True)
    if has_city:
        code = _EN_CODE.match(text, end)
        if code is not None:
            return _country_end(text, code.end()), True
        if comma is not None:
            pos, seen = end, True
    return pos, seen


def _country_end(text: str, pos: int) -> int:
    m = _COUNTRY.match(text, pos)
    return m.end() if m is not None else pos
