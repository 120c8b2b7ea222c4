"""Does a member ask for a human, and is the conversation going badly?

Two light detectors behind the promise "a human on request, always" (French
and English), for the hub to offer a person. No model and no dependency: the
text goes through :func:`hub.router.normalize` (lower case, accents stripped),
is cut into clauses, SMS spellings are expanded ("jveux", "qqn", "pls"), each
word or phrase is tagged from small lexicons (a person, a verb of contact, a
want, a question, a negation…), typos in the key nouns are forgiven by an edit
distance ("conseiler", "humian", "agnet"), and a few frames decide. Each
verdict carries a score and a reason, so the hub can log why it offered a human.

What counts as a request for a human (``tests/fixtures/human_requests.json``
is labelled with these rules):

- the member asks, now, to be put in touch with a person: talk, write, be
  called back, be transferred ("je veux parler à quelqu'un", "transfer me to
  an agent", "Est-ce qu'un conseiller peut me rappeler ?", "Quel est le numéro
  du service client ?");
- a message that is only such a noun, with politeness around it ("agent",
  "un conseiller svp", "HUMAN PLEASE", "conseiler");
- the member rejects the bot ("pas un robot", "I don't want to talk to a bot",
  "marre du robot").

What does not:

- people named in another role or in the past: "mon conseiller m'a dit que…",
  "l'agent de livraison", "travel agent", "human resources", "I spoke to an
  agent yesterday";
- "personne ne m'a répondu", "nobody answered": a complaint, not a request —
  :func:`conversation_going_badly` reports it as frustration, and the hub
  offers a human from there;
- a negated request ("pas besoin de conseiller", "no need for an agent");
- a question about what the bot is ("Êtes-vous un robot ?");
- "quelqu'un peut m'aider ?", "can someone help me with my bill?": helping is
  the bot's job; "someone" needs a verb of contact (talk, call back, put
  through…) to count.

:func:`conversation_going_badly` looks at the last few turns for, in this
order of priority: frustration in the member's last two messages (insults,
"c'est nul", "ras le bol", "useless", shouting in capitals, "!!!"), the bot
failing to understand twice among its last three replies (fallback replies
matched by patterns or a brand's predicate; a reply identical to the one
before counts as a miss), and the member asking the same question again among
their last three messages (near-duplicates after normalisation; different
order numbers make a different question).

Limits: the lexicons are hand-made, so a phrasing built on words they lack is
missed (paraphrases especially: "I forgot my password, what do I do?" is not
seen as "How do I reset my password?" asked again); irony and context beyond
one clause are not understood ("vous avez des conseillers ? j'aimerais en
avoir un").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from enum import Enum
from typing import Literal

from hub.router import normalize

__all__ = [
    "DEFAULT_FALLBACK_PATTERNS",
    "HumanRequest",
    "Signal",
    "SignalKind",
    "Turn",
    "conversation_going_badly",
    "conversation_signals",
    "detect_human_request",
    "wants_human",
]

Role = Literal["member", "bot"]
SignalKind = Literal["frustration", "bot_not_understanding", "repeated_question"]

# --------------------------------------------------------------------------- lexicons


class _Tag(Enum):
    HUMAN = "human"  # a person the member could be put through to
    WEAK = "weak"  # someone / quelqu'un / person: a person only with a verb of contact
    QUAL = "qual"  # real, vrai, live: turns a weak noun into a strong one
    BOT = "bot"  # robot, bot, machine
    CONTACT = "contact"  # talk, parler, transfer, call back…
    CONTACT_STRONG = "contact_strong"  # avoir, get, have: contact only with a strong noun
    WANT = "want"  # veux, voudrais, need, want, would like…
    ASK = "ask"  # can, pouvez, est-ce que, is there: a request only with a verb of contact
    CHANNEL = "channel"  # numéro, phone number: "le numéro du service client"
    NEG = "neg"  # pas, not, no need…
    REJECT = "reject"  # instead of, marre de, stop: turn against the bot
    CANT = "cant"  # n'arrive pas, can't: a failed attempt is still a request
    PRON = "pron"  # me, moi, us: the object of "call me", "me rappeler"
    AUX = "aux"  # a, ai, ont: "m'a conseillé", "a parlé" are past, not requests
    FILLER = "filler"  # politeness, greetings, articles: ignored in a bare request
    JOB = "job"  # devenir, hiring: "comment devenir conseiller"
    OTHER = "other"


def _words(spec: str) -> list[tuple[str, ...]]:
    return [tuple(item.split()) for item in spec.split(",") if item.strip()]


_LEXICON: dict[_Tag, str] = {
    _Tag.HUMAN: (
        "humain,humains,humaine,humaines,human,humans,etre humain,human being,conseiller,conseillere,"
        "conseillers,conseilleres,advisor,advisors,adviser,advisers,agent,agents,operateur,operatrice,operator,"
        "operators,representant,representante,representative,representatives,rep,interlocuteur,"
        "interlocutrice,responsable,manager,supervisor,superviseur,collaborateur,collaboratrice,"
        "service client,service clients,service clientele,customer service,customer support,"
        "support team,sav,hotline,personne physique,help desk,helpdesk,chef,boss,superieur,superior,"
        "directeur,director,collegue,collegues,colleague,colleagues,tech support,technical support,"
        "support technique,support agent,member of staff,staff member,membre du personnel,"
        "member of your staff,member of your team,membre de votre equipe,membre de l equipe,"
        "service reclamation,service reclamations,service des reclamations,service apres vente,"
        "service consommateur,service consommateurs,customer care,care team,customer care team,"
        "complaints department,complaints team"
    ),
    _Tag.WEAK: (
        "quelqu un,quelqu une,someone,somebody,anyone,anybody,personne,personnes,person,people,gens,"
        "un de vos,une de vos,one of your,gars,mec,guy,etre vivant,membre,member,staff,team,equipe"
    ),
    _Tag.QUAL: "vrai,vraie,vrais,reel,reelle,real,actual,live,en chair et en os,de chair",
    _Tag.BOT: "robot,robots,bot,bots,chatbot,chat bot,machine,automate,ia,assistant virtuel",
    _Tag.CONTACT: (
        "parler,parle,parlez,causer,discuter,echanger,joindre,contacter,passer,passez,passe,passes,"
        "transferer,transferez,transfere,transferer,rediriger,redirigez,mettre en relation,"
        "mettez en relation,mis en relation,mise en relation,mettre en contact,mettez moi en contact,"
        "en relation,en contact,rappeler,rappelle,rappelez,appeler,appelle,appelez,repondre,"
        "au telephone,au bout du fil,de vive voix,talk,speak,chat,reach,contact,connect,"
        "transfer,redirect,put through,put me through,call,call back,phone me,escalate,on the line,"
        "on the phone,answer me,see,pass me,pass me to,hand me over,hand me,hand over,hand off,"
        "transmettre,transmettez,refer,prendre le relais,take over,take it from here,step in,"
        "mettez moi,mets moi,met moi,en lien,mettre en lien,get back to me,revenir vers moi,recontacter,"
        "contact me,take a look,look into,jeter un oeil,dispo,disponible,disponibles,available,adresser,"
        "phone,ring,telephoner"
    ),
    _Tag.CONTACT_STRONG: "avoir,get,have,find,put",
    _Tag.WANT: (
        "veux,veut,voudrais,voudrait,voudrai,voulais,souhaite,souhaiterais,souhaiterai,aimerais,"
        "aimerai,prefere,preferais,prefererais,besoin,exige,demande,faut,want,wanna,need,needs,"
        "d like,would like,prefer,d prefer,would rather,d rather,let me,give me,get me,insist,"
        "donnez moi,donne moi,trouvez moi,envoyez moi,find me,send me,put me on,merci de"
    ),
    _Tag.ASK: (
        "peux,peut,puis,pouvez,pourriez,pourrait,pourrais,possible,est ce que,est ce qu,y a t il,il y a,"
        "comment,can,could,may,might,is there,are there,is,are,any way,how,where,would you,will you,"
        "dites,demandez,tell,ask,y a pas,il y a pas,il n y a pas,n y a t il pas,is there no,isn t there"
    ),
    _Tag.CHANNEL: "numero,number,telephone,phone number,mail,email,adresse mail,contact details",
    _Tag.NEG: (
        "pas,not,never,jamais,no need,don t,dont,do not,doesn t,does not,without,sans,pas besoin,"
        "pas la peine,n ai pas besoin,no,veux plus,voulons plus,souhaite plus,no longer,not anymore"
    ),
    _Tag.REJECT: (
        "instead of,au lieu d,au lieu de,plutot qu,plutot que,rather than,marre,fed up,sick of,"
        "stop,arretez,ras le bol,assez,no more"
    ),
    _Tag.CANT: "n arrive pas,arrive pas,can t,cannot,cant,couldn t,unable,impossible de,impossible",
    _Tag.PRON: "me,m,moi,nous,us",
    _Tag.AUX: "a,ai,as,avons,avez,ont,avait,avais,ete,already",
    _Tag.FILLER: (
        "bonjour,bonsoir,salut,allo,hello,hi,hey,svp,stp,s il vous plait,s il te plait,please,merci,"
        "thanks,thank you,un,une,le,la,l,les,du,des,de,d,a,an,the,some,mon,ma,my,votre,your,vos,"
        "vite,now,asap,urgent,maintenant,immediatement,quickly,right now,tout de suite,oui,yes,ok,"
        "okay,juste,just,only,seulement,encore,again,en,avec,with,to,ce,cela,this,c,oh,euh,hum"
    ),
    _Tag.JOB: (
        "devenir,become,becoming,hiring,hire,recrutez,recrute,recrutement,recruit,recruiting,postuler,"
        "candidature,apply,job,jobs,emploi,stage,internship,career,carriere,poste"
    ),
}

# SMS and chat spellings, expanded before tagging.
_EXPAND: dict[str, str] = {
    "jveux": "je veux",
    "jveu": "je veux",
    "chui": "je suis",
    "jvoudrais": "je voudrais",
    "jvoudrai": "je voudrais",
    "jaimerais": "j aimerais",
    "jsouhaite": "je souhaite",
    "qqn": "quelqu un",
    "qqun": "quelqu un",
    "qq1": "quelqu un",
    "qlqn": "quelqu un",
    "qlq1": "quelqu un",
    "quelquun": "quelqu un",
    "kelkun": "quelqu un",
    "pls": "please",
    "plz": "please",
    "plse": "please",
    "pleas": "please",
    "u": "you",
    "ur": "your",
    "w": "with",
    "lemme": "let me",
    "gimme": "give me",
    "wanna": "want to",
    "ya": "y a",
    "tel": "telephone",
    "qq": "quelqu",
}
# Stems of the French verbs of wanting, whatever the tense: "désirerais", "réclame", "souhaitons".
_WANT_STEMS = ("voudr", "voul", "souhait", "desir", "aimerai", "prefer", "exig", "reclam")
_POLITE = frozenset(["svp", "stp", "please", "s il vous plait", "s il te plait", "merci de"])

# Words that sit an edit away from a key noun but mean something else.
_NOT_TYPOS = frozenset(
    [
        "agence",
        "agenda",
        "agences",
        "agendas",
        "agente",
        "agentes",
        "humide",
        "humides",
        "humeur",
        "humour",
        "humble",
        "humanite",
        "humanity",
        "humid",
        "humidite",
        "humidity",
        "personal",
        "personnel",
        "personnels",
        "personnelle",
        "personnelles",
        "personally",
        "personnellement",
        "personality",
        "personnalite",
        "persons",
        "operation",
        "operations",
        "operating",
        "operate",
        "operated",
        "conseil",
        "conseils",
        "conseillez",
        "conseillons",
        "conseillent",
        "conseilles",
        "represente",
        "representer",
        "represented",
        "represents",
        "representation",
        "responsables",
        "responsabilite",
        "managed",
        "manages",
        "managing",
        "manage",
        "someones",
        "anyones",
        "bote",
        "robe",
        "robes",
        "rot",
        "rob",
        "robots",
        "robotique",
    ]
)

# Nouns of the HUMAN/WEAK lexicons that are worth a typo (long enough to be distinctive).
_TYPO_TARGETS: tuple[str, ...] = (
    "humain",
    "human",
    "conseiller",
    "conseillere",
    "advisor",
    "agent",
    "operateur",
    "operator",
    "representant",
    "representative",
    "interlocuteur",
    "responsable",
    "supervisor",
    "quelqu",
    "someone",
    "somebody",
    "personne",
    "person",
)

# Another sense of a key noun, told by its neighbours: (words before, noun, words after).
_OTHER_SENSE_BEFORE: dict[str, frozenset[str]] = {
    "agent": frozenset(
        [
            "delivery",
            "travel",
            "estate",
            "insurance",
            "booking",
            "shipping",
            "secret",
            "free",
            "border",
            "customs",
            "ticket",
            "leasing",
            "letting",
            "property",
            "immobilier",
        ]
    ),
    "agents": frozenset(["delivery", "travel", "estate", "insurance", "secret", "border", "customs"]),
    "operator": frozenset(["network", "mobile", "tour", "phone", "telecom", "broadband", "machine", "crane"]),
    "operateur": frozenset(["telephonique"]),
    "person": frozenset(["delivery", "in", "per"]),
    "personne": frozenset(["en", "par", "autre"]),
    "personnes": frozenset(["deux", "trois", "quatre", "cinq", "2", "3", "4", "5", "par"]),
    "humaines": frozenset(["ressources", "sciences"]),
    "manager": frozenset(["project", "property"]),
    "machine": frozenset(["washing", "coffee", "vending", "sewing", "slot"]),
}
_OTHER_SENSE_AFTER: dict[str, frozenset[str]] = {
    "agent": frozenset(
        [
            "de",
            "d",
            "immobilier",
            "commercial",
            "secret",
            "orange",
            "livraison",
            "securite",
            "entretien",
            "voyage",
            "voyages",
        ]
    ),
    "agents": frozenset(["de", "d", "immobiliers"]),
    "human": frozenset(
        [
            "resources",
            "resource",
            "rights",
            "right",
            "grade",
            "error",
            "nature",
            "body",
            "size",
            "sized",
            "trafficking",
            "readable",
        ]
    ),
    "humain": frozenset(["resources"]),
    "operateur": frozenset(["reseau", "telephonique", "mobile", "internet", "telecom"]),
    "operator": frozenset(["error"]),
    "person": frozenset(["with", "who"]),
    "personne": frozenset(["ne", "n", "agee", "agees", "handicapee", "qui"]),
    "personnes": frozenset(["agees", "ne", "n"]),
    "robot": frozenset(
        [
            "aspirateur",
            "patissier",
            "cuiseur",
            "menager",
            "cuisine",
            "tondeuse",
            "laveur",
            "vacuum",
            "mower",
            "cleaner",
        ]
    ),
    "bot": frozenset(),
    "machine": frozenset(["a", "laver", "cafe", "de", "d", "learning"]),
}
# After "agent de", these still name someone to talk to ("un agent du service client").
_AGENT_DE_OK = frozenset(["service", "votre", "vos", "chez", "accueil", "support", "clientele"])


def _build_phrases() -> dict[tuple[str, ...], _Tag]:
    phrases: dict[tuple[str, ...], _Tag] = {}
    # Later tags do not override earlier ones: the order of _LEXICON is the priority.
    for tag, spec in _LEXICON.items():
        for words in _words(spec):
            phrases.setdefault(words, tag)
    return phrases


_PHRASES = _build_phrases()
_MAX_PHRASE = max(len(p) for p in _PHRASES)
# Single-word overrides where a word belongs to a context-dependent tag.
_PHRASES[("a",)] = _Tag.AUX  # "m'a conseillé", "a parlé": also a filler, handled in _is_bare
_PHRASES[("no",)] = _Tag.NEG


@dataclass(frozen=True)
class _Token:
    text: str  # the canonical form (the lexicon's), or the word as written
    tag: _Tag
    fuzzy: bool = False


def _osa_distance(a: str, b: str, limit: int) -> int:
    """Edit distance with adjacent transpositions, stopping early once over ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def _typo_of(word: str) -> str | None:
    """The key noun ``word`` misspells, if any ("conseiler" → "conseiller", "agnet" → "agent")."""
    if len(word) < 4 or word in _NOT_TYPOS or not word.isalpha():
        return None
    best: tuple[int, str] | None = None
    for target in _TYPO_TARGETS:
        limit = 1 if len(target) <= 7 else 2
        if len(word) == 4 and (len(target) > 5 or word[:2] != target[:2]):
            continue  # four letters: only "humn" for "human", "agnt" for "agent"
        dist = _osa_distance(word, target, limit)
        if dist <= limit and (best is None or dist < best[0]):
            best = (dist, target)
    return None if best is None else best[1]


def _expand(words: Iterable[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        out.extend(_EXPAND.get(word, word).split())
    return out


def _tokenize(clause: str) -> list[_Token]:
    words = _expand(normalize(clause).split())
    tokens: list[_Token] = []
    i = 0
    while i < len(words):
        for size in range(min(_MAX_PHRASE, len(words) - i), 0, -1):
            key = tuple(words[i : i + size])
            tag = _PHRASES.get(key)
            if tag is not None:
                tokens.append(_Token(" ".join(key), tag))
                i += size
                break
        else:
            word = words[i]
            typo = None if word.startswith(_WANT_STEMS) else _typo_of(word)
            if typo is None:
                tokens.append(_Token(word, _Tag.WANT if word.startswith(_WANT_STEMS) else _Tag.OTHER))
            elif typo == "quelqu":
                tokens.append(_Token("quelqu un", _Tag.WEAK, fuzzy=True))
            else:
                # "conseillé svp" reads as the noun; _disambiguate turns "m'a conseillé" back into a verb.
                tokens.append(_Token(typo, _PHRASES[(typo,)], fuzzy=True))
            i += 1
    return _disambiguate(tokens)


_CALLBACK_VERBS = frozenset(
    ["rappeler", "rappelle", "rappelez", "appeler", "appelez", "call", "call back", "phone me"]
)
# Not verbs but still contact when they follow the noun: "quelqu'un au téléphone".
_CONTACT_PLACES = frozenset(["au telephone", "au bout du fil", "de vive voix", "on the line", "on the phone"])
_VERB_BEFORE = frozenset(
    [
        "me",
        "m",
        "te",
        "t",
        "nous",
        "vous",
        "lui",
        "leur",
        "se",
        "s",
        "a",
        "ai",
        "as",
        "avons",
        "avez",
        "ont",
        "avait",
        "ete",
    ]
)


def _disambiguate(tokens: list[_Token]) -> list[_Token]:
    """Drop the key-noun tag where the neighbours show another sense."""
    out: list[_Token] = []
    for i, tok in enumerate(tokens):
        before = tokens[i - 1].text if i > 0 else ""
        after = tokens[i + 1].text if i + 1 < len(tokens) else ""
        after2 = tokens[i + 2].text if i + 2 < len(tokens) else ""
        other = False
        if tok.tag in {_Tag.HUMAN, _Tag.WEAK, _Tag.BOT}:
            if tok.text.startswith("conseill") and before in _VERB_BEFORE:
                other = True  # "me conseiller une raquette", "m'a conseillé"
            elif before in _OTHER_SENSE_BEFORE.get(tok.text, frozenset()):
                other = True
            elif after in _OTHER_SENSE_AFTER.get(tok.text, frozenset()):
                # "agent de livraison" is another job; "agent du service client" is not.
                other = not (tok.text == "agent" and after in {"de", "d"} and after2 in _AGENT_DE_OK)
        out.append(_Token(tok.text, _Tag.OTHER) if other else tok)
    return out


_CLAUSE_SPLIT = re.compile(r"[.;!?,\n\u2014\u2013()]+|\s-\s|\b(?:mais|but)\b", re.IGNORECASE)

# --------------------------------------------------------------------------- requests for a human


@dataclass(frozen=True)
class HumanRequest:
    """The verdict on one message: does the member ask for a human, how sure, and why."""

    wants_human: bool
    score: float
    reason: str


_NO = HumanRequest(wants_human=False, score=0.0, reason="no request for a person")
_NEG_WINDOW = 6


def _is_bare(tokens: Sequence[_Token]) -> bool:
    """Only key nouns, qualifiers and politeness: "un conseiller svp", "HUMAN PLEASE"."""
    has_noun = any(t.tag is _Tag.HUMAN for t in tokens) or (
        any(t.tag is _Tag.WEAK for t in tokens) and any(t.tag is _Tag.QUAL for t in tokens)
    )
    allowed = {_Tag.HUMAN, _Tag.QUAL, _Tag.FILLER, _Tag.WANT}
    return has_noun and all(
        t.tag in allowed or (t.tag is _Tag.WEAK and has_noun) or t.text in {"a", "stop"} for t in tokens
    )


def _negated(tokens: Sequence[_Token], at: int) -> bool:
    window = tokens[max(0, at - _NEG_WINDOW) : at]
    if any(t.tag is _Tag.CANT for t in window):
        return False  # "je n'arrive pas à joindre un conseiller" still asks for one
    return any(t.tag is _Tag.NEG for t in window)


def _participle(verb: str) -> bool:
    """True for "parlé" in "a parlé" (the past); "à parler", "à joindre" are infinitives."""
    return not verb.endswith(("er", "re", "ir"))


def _clause_request(tokens: Sequence[_Token]) -> HumanRequest:
    if any(t.tag is _Tag.JOB for t in tokens):
        return HumanRequest(wants_human=False, score=0.05, reason="a job enquiry, not a request")
    tags = [t.tag for t in tokens]

    # Rejecting the bot: "pas un robot", "instead of a machine", "marre du robot".
    for i, tok in enumerate(tokens):
        if tok.tag is _Tag.BOT:
            window = tags[max(0, i - _NEG_WINDOW) : i]
            if _Tag.NEG in window or _Tag.REJECT in window:
                return HumanRequest(wants_human=True, score=0.9, reason=f"rejects the bot ({tok.text!r})")

    nouns = [i for i, t in enumerate(tokens) if t.tag in {_Tag.HUMAN, _Tag.WEAK}]
    if not nouns:
        return _callback_request(tokens)
    if _is_bare(tokens) and not any(_negated(tokens, i) for i in nouns):
        noun = tokens[nouns[0]]
        score = 0.8 if any(tokens[i].fuzzy for i in nouns) else 0.95
        return HumanRequest(wants_human=True, score=score, reason=f"asks for {noun.text!r}")
    for i in nouns:
        if not _negated(tokens, i):
            verdict = _noun_request(tokens, i)
            if verdict is not None:
                return verdict
    return HumanRequest(wants_human=False, score=0.2, reason="mentions a person without asking for one")


def _is_strong(tokens: Sequence[_Token], i: int) -> bool:
    """A key noun, or a weak one next to a qualifier: "vraie personne", "someone real"."""
    if tokens[i].tag is _Tag.HUMAN:
        return True
    near = [*tokens[max(0, i - 1) : i], *tokens[i + 1 : i + 3]]
    return tokens[i].tag is _Tag.WEAK and any(t.tag is _Tag.QUAL for t in near)


def _with_member(tokens: Sequence[_Token], j: int) -> bool:
    """The verb at ``j`` has the member as its object: "me rappeler", "call me", "phone me"."""
    if {"me", "m", "moi"} & set(tokens[j].text.split()):
        return True
    neighbours = [*tokens[max(0, j - 1) : j], *tokens[j + 1 : j + 2]]
    return any(t.tag is _Tag.PRON for t in neighbours)


def _noun_request(tokens: Sequence[_Token], i: int) -> HumanRequest | None:
    """Whether the clause asks to be put in touch with the person named at ``i``."""
    tags = [t.tag for t in tokens]
    noun = tokens[i]
    strong = _is_strong(tokens, i)
    fuzzy = 0.15 if noun.fuzzy else 0.0
    asks = any(t in {_Tag.WANT, _Tag.ASK, _Tag.CANT} for t in tags) or any(t.text in _POLITE for t in tokens)
    # "m'a dit", "a raccroché": an auxiliary and a participle tell a story, they ask nothing.
    narrative = any(a.tag is _Tag.AUX and _participle(b.text) for a, b in itertools.pairwise(tokens))
    contact_before = [
        j
        for j in range(i)
        if (tags[j] is _Tag.CONTACT or (strong and tags[j] is _Tag.CONTACT_STRONG))
        and not (j > 0 and tags[j - 1] is _Tag.AUX and _participle(tokens[j].text))
    ]
    # After the noun, a verb of contact must have the member as object ("peut me rappeler"),
    # or follow a question about that person ("is there a human I can talk to").
    ask_before = _Tag.ASK in tags[:i]
    contact_after = [
        j
        for j in range(i + 1, len(tokens))
        if tags[j] is _Tag.CONTACT
        and (_with_member(tokens, j) or tokens[j].text in _CONTACT_PLACES or ask_before or (strong and asks))
    ]
    content_before = [t for t in tokens[:i] if t.tag is not _Tag.FILLER]
    content_after = [t for t in tokens[i + 1 :] if t.tag not in {_Tag.FILLER, _Tag.QUAL}]
    verdict: tuple[float, str] | None = None
    if strong and _Tag.WANT in tags[:i]:
        verdict = (0.95, f"wants {noun.text!r}")
    elif strong and _Tag.CHANNEL in tags[:i]:
        verdict = (0.85, f"asks how to reach {noun.text!r}")
    elif contact_before and (asks or contact_before[0] <= 2):
        # "je veux parler à…", "can I talk to…", or an imperative: "passez-moi…", "talk to…"
        verdict = (0.95 if strong else 0.85, f"{tokens[contact_before[0]].text!r} + {noun.text!r}")
    elif contact_after and asks:
        verdict = (0.9 if strong else 0.8, f"{noun.text!r} + {tokens[contact_after[0]].text!r}")
    elif strong and not content_before and not narrative and any(t.text in _POLITE for t in tokens):
        verdict = (0.85, f"asks for {noun.text!r}, politely")  # "un humain pour m'aider svp"
    elif not strong and _Tag.WANT in tags[max(0, i - 3) : i] and not content_after:
        verdict = (0.8, f"wants {noun.text!r}")  # "I need a person", "je veux quelqu'un"
    if verdict is None:
        return None
    return HumanRequest(wants_human=True, score=verdict[0] - fuzzy, reason=verdict[1])


def _callback_request(tokens: Sequence[_Token]) -> HumanRequest:
    """A callback needs a person: "Pouvez-vous me rappeler ?", "please call me back"."""
    tags = [t.tag for t in tokens]
    asks = any(tag in {_Tag.WANT, _Tag.ASK} for tag in tags) or any(t.text in _POLITE for t in tokens)
    start = next((k for k, t in enumerate(tokens) if t.tag is not _Tag.FILLER), 0)
    for j, tok in enumerate(tokens):
        if tok.text in _CALLBACK_VERBS:
            with_me = _with_member(tokens, j)
            # Asked ("pouvez-vous me rappeler ?") or an imperative ("rappelez-moi", "please call me back").
            if (with_me or tok.text in {"call back", "phone me"}) and (asks or j == start):
                return HumanRequest(
                    wants_human=True, score=0.75, reason=f"asks for a callback ({tok.text!r})"
                )
    return _NO


def detect_human_request(text: str) -> HumanRequest:
    """Whether ``text`` asks to be put in touch with a person, with a score in [0, 1] and the reason."""
    best = _NO
    for clause in _CLAUSE_SPLIT.split(text):
        if not clause or not clause.strip():
            continue
        tokens = _tokenize(clause)
        if not tokens:
            continue
        verdict = _clause_request(tokens)
        if (verdict.wants_human and (not best.wants_human or verdict.score > best.score)) or (
            not best.wants_human and verdict.score > best.score
        ):
            best = verdict
    return best


def wants_human(text: str) -> bool:
    """True when ``text`` asks for a human ("un conseiller svp", "can I talk to someone")."""
    return detect_human_request(text).wants_human


# --------------------------------------------------------------------------- conversations


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, from the member or from the brand's bot."""

    role: Role
    text: str

    def __post_init__(self) -> None:
        if self.role not in ("member", "bot"):
            raise ValueError(f"Turn.role must be 'member' or 'bot', got {self.role!r}")


@dataclass(frozen=True)
class Signal:
    """Why the hub should offer a human: which signal fired, on which turn, and the evidence."""

    kind: SignalKind
    turn: int
    reason: str
    evidence: tuple[int, ...] = field(default=())


# Matched against normalize(reply): lower case, no accents, punctuation turned into spaces.
DEFAULT_FALLBACK_PATTERNS: tuple[str, ...] = (
    r"\bje n ai pas (bien |tres bien )?(compris|saisi)\b",
    r"\bje ne (comprends|saisis) pas\b",
    r"\bje ne suis pas (sur|certain|certaine) d avoir (bien )?compris\b",
    r"\b(pouvez|pourriez) vous (reformuler|preciser votre demande)\b",
    r"\breformule[rz]?\b",
    r"\bje ne sais pas (encore )?(repondre|comment (vous )?(aider|repondre))\b",
    r"\bje ne (trouve|connais) pas (de )?(la )?reponse\b",
    r"^(desole |pardon )*je (peux|sais) vous aider (a|pour|avec|sur)\b",
    r"\bi (did not|didn t|do not|don t) (quite )?(understand|get|catch)\b",
    r"\bi (m|am) (not sure|unsure) (what you mean|i understand|i follow|what you re asking)\b",
    r"\b(could|can|would) you (please )?(rephrase|reword|say that differently)\b",
    r"\brephrase\b",
    r"^(sorry |i m sorry )*i can (only )?help (you )?(with|you)\b",
    r"\bi (m|am) not able to help with that\b",
    r"\bi (do not|don t) know how to (help|answer)\b",
    r"\bsorry i (don t|do not) (understand|follow)\b",
)

_FRUSTRATION_PHRASES: tuple[str, ...] = (
    # French
    "c est nul",
    "est nul",
    "etes nuls",
    "etes nul",
    "trop nul",
    "vraiment nul",
    "nul a chier",
    "completement nul",
    "service nul",
    "appli nulle",
    "c est nulle",
    "inadmissible",
    "inacceptable",
    "scandaleux",
    "scandale",
    "honteux",
    "honte",
    "lamentable",
    "pathetique",
    "ridicule",
    "n importe quoi",
    "ras le bol",
    "j en ai marre",
    "en ai marre",
    "marre",
    "en ai assez",
    "ca suffit",
    "marche jamais",
    "fonctionne jamais",
    "marche toujours pas",
    "sert a rien",
    "inutile",
    "incompetent",
    "incompetents",
    "incapable",
    "incapables",
    "foutage de gueule",
    "vous foutez",
    "se fout",
    "debile",
    "idiot",
    "stupide",
    "con",
    "connard",
    "connards",
    "conne",
    "putain",
    "merde",
    "bordel",
    "catastrophique",
    "insupportable",
    "exasperant",
    "exaspere",
    "enerve",
    "enervant",
    "furieux",
    "furieuse",
    "en colere",
    "degoute",
    "comprenez rien",
    "comprends rien",
    "comprend rien",
    "pas ce que j ai demande",
    "repond pas a ma question",
    "repondez pas a ma question",
    "personne ne m a repondu",
    "personne ne repond",
    "personne ne me repond",
    "toujours pas de reponse",
    # English
    "useless",
    "ridiculous",
    "is a joke",
    "what a joke",
    "c est une blague",
    "unbelievable",
    "unacceptable",
    "outrageous",
    "disgrace",
    "disgraceful",
    "pathetic",
    "terrible service",
    "worst",
    "awful",
    "horrible",
    "rubbish",
    "garbage",
    "crap",
    "sucks",
    "waste of time",
    "fed up",
    "sick of",
    "sick and tired",
    "never works",
    "stupid",
    "idiotic",
    "idiots",
    "dumb",
    "moron",
    "incompetent",
    "fuck",
    "fucking",
    "wtf",
    "shit",
    "damn",
    "ffs",
    "for god s sake",
    "frustrated",
    "frustrating",
    "annoyed",
    "annoying",
    "angry",
    "furious",
    "pissed",
    "are you kidding",
    "kidding me",
    "not what i asked",
    "you don t understand",
    "you do not understand",
    "not listening",
    "nobody answered",
    "nobody answers",
    "no one answered",
    "no one answers",
    "nobody replied",
    "still no answer",
)
_FRUSTRATION: tuple[tuple[str, ...], ...] = tuple(tuple(p.split()) for p in _FRUSTRATION_PHRASES)
# Long words worth a typo ("inadmissilbe"): one edit for 9+ letters.
_FRUSTRATION_LONG: tuple[str, ...] = tuple(p for p in _FRUSTRATION_PHRASES if " " not in p and len(p) >= 9)
_POSITIVE = frozenset(
    [
        "merci",
        "thanks",
        "thank",
        "super",
        "genial",
        "parfait",
        "great",
        "awesome",
        "perfect",
        "excellent",
        "love",
        "bravo",
        "top",
        "cool",
        "nickel",
        "formidable",
        "wonderful",
        "amazing",
        "brilliant",
    ]
)
_SHOUT_MIN_LETTERS = 12
_SHOUT_RATIO = 0.7
_REPEAT_MIN_CHARS = 10
_REPEAT_RATIO = 0.8


def _frustration(text: str) -> str | None:
    words = normalize(text).split()
    padded = f" {' '.join(words)} "
    for phrase in _FRUSTRATION:
        if f" {' '.join(phrase)} " in padded:
            return f"says {' '.join(phrase)!r}"
    for word in words:
        if len(word) >= 9:
            for target in _FRUSTRATION_LONG:
                if _osa_distance(word, target, 1) <= 1:
                    return f"says {word!r} (~{target!r})"
    if any(w in _POSITIVE for w in words):
        return None  # "SUPER MERCI !!!" is joy, not anger
    letters = [c for c in text if c.isalpha()]
    if (
        len(letters) >= _SHOUT_MIN_LETTERS
        and sum(c.isupper() for c in letters) / len(letters) >= _SHOUT_RATIO
    ):
        return "shouts in capitals"
    if re.search(r"[!?]{3,}", text.replace(" ", "")) and "!" in text:
        return "piles up exclamation marks"
    return None


def _is_fallback(text: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    norm = normalize(text)
    return any(p.search(norm) for p in patterns)


def _same_question(a: str, b: str) -> bool:
    na, nb = normalize(a), normalize(b)
    if min(len(na), len(nb)) < _REPEAT_MIN_CHARS or len(na.split()) < 3 or len(nb.split()) < 3:
        return False  # "oui", "ok merci": confirmations are not questions asked again
    digits_a, digits_b = set(re.findall(r"\d+", na)), set(re.findall(r"\d+", nb))
    if digits_a and digits_b and digits_a != digits_b:
        return False  # "ma commande 4821" then "ma commande 5530": a new question
    if SequenceMatcher(None, na, nb).ratio() >= _REPEAT_RATIO:
        return True
    # "ok but when will my refund arrive" contains "when will my refund arrive".
    shorter, longer = sorted((na, nb), key=len)
    return len(shorter.split()) >= 4 and f" {shorter} " in f" {longer} "


def conversation_signals(
    history: Sequence[Turn],
    *,
    fallback_patterns: Iterable[str | re.Pattern[str]] | None = None,
    is_fallback: Callable[[str], bool] | None = None,
    member_window: int = 3,
    bot_window: int = 3,
) -> tuple[Signal, ...]:
    """Every signal that fired in the recent turns, most urgent first.

    ``fallback_patterns`` replaces :data:`DEFAULT_FALLBACK_PATTERNS` (matched
    against ``normalize(reply)``); ``is_fallback`` is a brand's own test of its
    bot's replies, used in addition to the patterns.
    """
    patterns = [
        re.compile(p) if isinstance(p, str) else p
        for p in (DEFAULT_FALLBACK_PATTERNS if fallback_patterns is None else fallback_patterns)
    ]
    members = [i for i, t in enumerate(history) if t.role == "member"][-member_window:]
    bots = [i for i, t in enumerate(history) if t.role == "bot"][-bot_window:]
    signals: list[Signal] = []

    # Frustration: in the member's last two messages.
    for i in reversed(members[-2:]):
        why = _frustration(history[i].text)
        if why is not None:
            signals.append(Signal("frustration", i, f"the member {why}", (i,)))
            break

    # The bot did not understand twice: fallback replies, or the same reply twice in a row.
    failed: list[int] = []
    for k, i in enumerate(bots):
        text = history[i].text
        looped = (
            k > 0
            and SequenceMatcher(None, normalize(history[bots[k - 1]].text), normalize(text)).ratio() >= 0.9
        )
        if _is_fallback(text, patterns) or (is_fallback is not None and is_fallback(text)) or looped:
            failed.append(i)
    if len(failed) >= 2:
        signals.append(
            Signal("bot_not_understanding", failed[-1], f"{len(failed)} bot replies missed", tuple(failed))
        )

    # The member asked the same question again.
    if members:
        last = members[-1]
        for i in members[:-1]:
            if _same_question(history[i].text, history[last].text):
                signals.append(Signal("repeated_question", last, "the member asked again", (i, last)))
                break
    return tuple(signals)


def conversation_going_badly(
    history: Sequence[Turn],
    *,
    fallback_patterns: Iterable[str | re.Pattern[str]] | None = None,
    is_fallback: Callable[[str], bool] | None = None,
) -> Signal | None:
    """The most urgent reason to offer a human, or None when the conversation is going fine."""
    signals = conversation_signals(history, fallback_patterns=fallback_patterns, is_fallback=is_fallback)
    return signals[0] if signals else None
