"""Quiet by default: whether, and when, a brand's notification reaches the household.

Wired into the hub (:mod:`hub.service`). For each
``notification`` envelope a brand sends (once, after the store has deduplicated
it by id)::

    decision = policy.decide(brand_id, member, body.category, body.expires_at, ref=envelope.id)
    # deliver → show and notify now; hold → keep silent until decision.release_at;
    # block / drop → keep it out of sight (it is counted)
    ...
    for held in policy.due_held():      # every minute or so, and at start
        notify(held.ref)

The rules, in the order :meth:`NotificationPolicy.decide` applies them:

1. **category** — each brand has its allowed categories: ``transactional`` and
   ``service`` on, ``marketing`` **off** until the household turns it on for
   that brand (:meth:`~NotificationPolicy.allow`). Not allowed → ``block``
   (reason ``category_off``). Marketing nobody allowed is never delivered.
2. **expiry** — ``expires_at`` at or before now → ``drop`` (``expired``).
3. **daily cap** — at most ``cap(brand)`` notifications (default 5) per local
   day per brand in the capped categories (``service`` and ``marketing`` by
   default). Over it → ``block`` (``daily_cap``). Transactional messages are
   not capped by default: they follow the member's own act (an order, an
   appointment) and withholding one harms the member; a brand that abuses the
   category shows in the counters, and the household can turn its
   transactional messages off. Delivered and held messages both take a slot.
4. **quiet hours** — the member's quiet hours (else the household's, else
   ``22:00-07:30``), read in their time zone (``Europe/Paris`` by default,
   daylight saving included). Inside them → ``hold`` with ``release_at`` = the
   end of the quiet hours (``quiet_hours``), or ``drop``
   (``expires_during_quiet_hours``) if it would expire before then.
5. otherwise → ``deliver`` (``allowed``).

Held notifications are stored (``notify_held``, with the caller's ``ref``, the
envelope id) and :meth:`~NotificationPolicy.due_held` hands out those whose
``release_at`` has come, removing them as it does; one that expired meanwhile
is dropped instead. Call it inside the transaction that records the release,
and a crash releases nothing twice and loses nothing.

Counters are kept per brand, category, action and local month (``YYYY-MM``)
in ``notify_counts``: a held message counts as ``hold``, then as ``deliver``
(or ``drop``) when released. :meth:`~NotificationPolicy.counts` reads them and
:func:`count_sentence` says them: « 23 messages publicitaires de Sportissimo
bloqués ce mois-ci. » / "23 marketing messages from Sportissimo blocked this
month."

Time comes only from ``clock`` (milliseconds since the epoch, injectable);
days and months are those of the household's time zone.

Schema (created if missing)::

    notify_categories  (brand_id, category) → allowed, changed_at
    notify_caps        brand_id → per_day
    notify_quiet       member → spec ("22:00-07:30", or "" for none), tz
    notify_daily       (brand_id, day) → count            (for the cap; old days pruned)
    notify_held        id, ref, brand_id, member, category, held_at, release_at, expires_at
    notify_counts      (brand_id, category, action, month) → count
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo

from hub.protocol import Category, check_id, new_id, now_ms
from hub.sqlite import atomic as _atomic

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "DEFAULT_ALLOWED",
    "HOUSEHOLD",
    "Action",
    "Decision",
    "Held",
    "NotificationPolicy",
    "QuietHours",
    "count_sentence",
]

HOUSEHOLD: Final = "household"
Action = Literal["deliver", "hold", "block", "drop"]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
CATEGORIES: Final[tuple[Category, ...]] = get_args(Category)
DEFAULT_ALLOWED: Final[dict[str, bool]] = {"transactional": True, "service": True, "marketing": False}

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_MEMBER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS notify_categories (
        brand_id TEXT NOT NULL,
        category TEXT NOT NULL,
        allowed INTEGER NOT NULL,
        changed_at INTEGER NOT NULL,
        PRIMARY KEY (brand_id, category)
    )""",
    "CREATE TABLE IF NOT EXISTS notify_caps (brand_id TEXT PRIMARY KEY, per_day INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS notify_quiet (
        member TEXT PRIMARY KEY,
        spec TEXT NOT NULL,                     -- "22:00-07:30", or "" for no quiet hours
        tz TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS notify_daily (
        brand_id TEXT NOT NULL,
        day TEXT NOT NULL,                      -- YYYY-MM-DD, local
        count INTEGER NOT NULL,
        PRIMARY KEY (brand_id, day)
    )""",
    """CREATE TABLE IF NOT EXISTS notify_held (
        id TEXT PRIMARY KEY,
        ref TEXT,                               -- the caller's id: the notification envelope's
        brand_id TEXT NOT NULL,
        member TEXT NOT NULL,
        category TEXT NOT NULL,
        held_at INTEGER NOT NULL,
        release_at INTEGER NOT NULL,
        expires_at INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS notify_held_release ON notify_held(release_at)",
    """CREATE TABLE IF NOT EXISTS notify_counts (
        brand_id TEXT NOT NULL,
        category TEXT NOT NULL,
        action TEXT NOT NULL,
        month TEXT NOT NULL,                    -- YYYY-MM, local
        count INTEGER NOT NULL,
        PRIMARY KEY (brand_id, category, action, month)
    )""",
)


def _check_member(member: str) -> str:
    if not isinstance(member, str) or not _MEMBER_RE.match(member):
        raise ValueError(f"member {member!r} is not valid: expected {HOUSEHOLD!r} or a member id")
    return member


def _check_category(category: str) -> Category:
    if category not in CATEGORIES:
        raise ValueError(f"category {category!r} is unknown; expected one of {', '.join(CATEGORIES)}")
    return category  # checked just above


# --- quiet hours ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietHours:
    """A daily window of local time, ``start`` included, ``end`` excluded; may span midnight."""

    start: int  # minutes after local midnight
    end: int
    tz: str = "Europe/Paris"

    @classmethod
    def parse(cls, spec: str, tz: str = "Europe/Paris") -> QuietHours:
        """``"22:00-07:30"`` → QuietHours; ``ValueError`` naming what is wrong."""
        parts = spec.split("-") if isinstance(spec, str) else []
        matches = [_HHMM.match(part.strip()) for part in parts]
        if len(parts) != 2 or not all(matches):
            raise ValueError(
                f"quiet hours {spec!r} are not valid: expected 'HH:MM-HH:MM', e.g. '22:00-07:30'"
            )
        start, end = (int(m.group(1)) * 60 + int(m.group(2)) for m in matches if m)
        if start == end:
            raise ValueError(f"quiet hours {spec!r} start and end at the same time; expected a window")
        ZoneInfo(tz)  # raises for an unknown time zone
        return cls(start, end, tz)

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"

    def release_at(self, now: int) -> int | None:
        """If ``now`` (ms) is inside the window, when it ends (ms); else None."""
        zone = ZoneInfo(self.tz)
        local = datetime.fromtimestamp(now / 1000, zone)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            if not self.start <= minute < self.end:
                return None
            day = local.date()
        elif minute >= self.start:
            day = local.date() + timedelta(days=1)
        elif minute < self.end:
            day = local.date()
        else:
            return None
        end = datetime(day.year, day.month, day.day, self.end // 60, self.end % 60, tzinfo=zone)
        return int(end.timestamp() * 1000)


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What to do with one notification: ``action``, why (``reason``), and when a held one goes out."""

    action: Action
    reason: str
    release_at: int | None = None
    held_id: str | None = None


@dataclass(frozen=True)
class Held:
    """A notification kept back during quiet hours; ``ref`` is the caller's id for it."""

    id: str
    ref: str | None
    brand_id: str
    member: str
    category: Category
    held_at: int
    release_at: int
    expires_at: int | None


# --- the policy -------------------------------------------------------------------------------


class NotificationPolicy:
    """The household's notification rules and counters, in one SQLite connection.

    ``clock``: milliseconds since the epoch. ``timezone``: the household's, for
    days, months and default quiet hours. ``quiet_hours``: the default window
    (None for none). ``daily_cap``: the default per-brand cap. ``capped``: the
    categories the cap applies to.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        clock: Callable[[], int] = now_ms,
        *,
        timezone: str = "Europe/Paris",
        quiet_hours: str | None = "22:00-07:30",
        daily_cap: int = 5,
        capped: Iterable[str] = ("service", "marketing"),
    ) -> None:
        if daily_cap < 0:
            raise ValueError(f"daily_cap={daily_cap}: expected 0 or more")
        self.conn = conn
        self.clock = clock
        self.zone = ZoneInfo(timezone)
        self.timezone = timezone
        self.default_quiet = None if quiet_hours is None else QuietHours.parse(quiet_hours, timezone)
        self.default_cap = daily_cap
        self.capped = frozenset(_check_category(c) for c in capped)
        for statement in _SCHEMA:  # not executescript: it would commit the caller's work
            conn.execute(statement)

    # --- settings -----------------------------------------------------------------------------

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        with _atomic(self.conn):
            self.conn.execute(sql, params)

    def allowed(self, brand_id: str) -> dict[str, bool]:
        """``{"transactional": True, "service": True, "marketing": False}`` for ``brand_id``."""
        rows = self.conn.execute(
            "SELECT category, allowed FROM notify_categories WHERE brand_id = ?", (brand_id,)
        ).fetchall()
        return {**DEFAULT_ALLOWED, **{str(r[0]): bool(r[1]) for r in rows}}

    def allow(self, brand_id: str, category: str, allowed: bool = True) -> None:
        """Turn a category on (or off, with ``allowed=False``) for ``brand_id``."""
        check_id("brand", brand_id)
        _check_category(category)
        self._write(
            "INSERT INTO notify_categories (brand_id, category, allowed, changed_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(brand_id, category) DO UPDATE SET allowed = excluded.allowed,"
            " changed_at = excluded.changed_at",
            (brand_id, category, int(allowed), int(self.clock())),
        )

    def cap(self, brand_id: str) -> int:
        row = self.conn.execute("SELECT per_day FROM notify_caps WHERE brand_id = ?", (brand_id,)).fetchone()
        return self.default_cap if row is None else int(row[0])

    def set_cap(self, brand_id: str, per_day: int | None) -> None:
        """Set ``brand_id``'s daily cap (0 blocks every capped message); None for the default."""
        check_id("brand", brand_id)
        if per_day is None:
            self._write("DELETE FROM notify_caps WHERE brand_id = ?", (brand_id,))
            return
        if not isinstance(per_day, int) or per_day < 0:
            raise ValueError(f"per_day={per_day!r}: expected an integer, 0 or more")
        self._write(
            "INSERT INTO notify_caps (brand_id, per_day) VALUES (?, ?)"
            " ON CONFLICT(brand_id) DO UPDATE SET per_day = excluded.per_day",
            (brand_id, per_day),
        )

    def quiet_hours(self, member: str) -> QuietHours | None:
        """``member``'s quiet hours: its own, else the household's, else the default; None for none."""
        _check_member(member)
        for who in dict.fromkeys((member, HOUSEHOLD)):
            row = self.conn.execute("SELECT spec, tz FROM notify_quiet WHERE member = ?", (who,)).fetchone()
            if row is not None:
                return QuietHours.parse(row[0], row[1]) if row[0] else None
        return self.default_quiet

    def set_quiet_hours(self, member: str, spec: str | None, tz: str | None = None) -> None:
        """Set ``member``'s (or :data:`HOUSEHOLD`'s) quiet hours; ``spec=None`` means none at all."""
        _check_member(member)
        zone = tz or self.timezone
        if spec is not None:
            QuietHours.parse(spec, zone)
        self._write(
            "INSERT INTO notify_quiet (member, spec, tz) VALUES (?, ?, ?)"
            " ON CONFLICT(member) DO UPDATE SET spec = excluded.spec, tz = excluded.tz",
            (member, spec or "", zone),
        )

    def reset_quiet_hours(self, member: str) -> None:
        """Forget ``member``'s own quiet hours: it follows the household's (or the default) again."""
        _check_member(member)
        self._write("DELETE FROM notify_quiet WHERE member = ?", (member,))

    # --- decisions ----------------------------------------------------------------------------

    def forget_brand(self, brand_id: str) -> None:
        """The household erased this brand: its settings, held messages and counts go."""
        with _atomic(self.conn):
            for table in ("notify_held", "notify_categories", "notify_caps", "notify_daily", "notify_counts"):
                self.conn.execute(f"DELETE FROM {table} WHERE brand_id = ?", (brand_id,))  # noqa: S608

    def decide(
        self,
        brand_id: str,
        member: str,
        category: str,
        expires_at: int | None = None,
        *,
        ref: str | None = None,
    ) -> Decision:
        """Decide one notification's fate now, count it, and keep it if held (see the module doc)."""
        check_id("brand", brand_id)
        _check_member(member)
        cat = _check_category(category)
        now = int(self.clock())
        with _atomic(self.conn):
            decision = self._decide(brand_id, member, cat, expires_at, now)
            if decision.action == "hold":
                assert decision.release_at is not None  # _decide sets it with hold
                held_id = new_id()
                self.conn.execute(
                    "INSERT INTO notify_held"
                    " (id, ref, brand_id, member, category, held_at, release_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (held_id, ref, brand_id, member, cat, now, decision.release_at, expires_at),
                )
                decision = Decision("hold", decision.reason, decision.release_at, held_id)
            if decision.action in ("deliver", "hold") and cat in self.capped:
                self._take_slot(brand_id, now)
            self._count(brand_id, cat, decision.action, now)
        return decision

    def _decide(
        self, brand_id: str, member: str, category: Category, expires_at: int | None, now: int
    ) -> Decision:
        if not self.allowed(brand_id)[category]:
            return Decision("block", "category_off")
        if expires_at is not None and expires_at <= now:
            return Decision("drop", "expired")
        if category in self.capped and self._used_today(brand_id, now) >= self.cap(brand_id):
            return Decision("block", "daily_cap")
        quiet = self.quiet_hours(member)
        release_at = None if quiet is None else quiet.release_at(now)
        if release_at is not None:
            if expires_at is not None and expires_at <= release_at:
                return Decision("drop", "expires_during_quiet_hours")
            return Decision("hold", "quiet_hours", release_at)
        return Decision("deliver", "allowed")

    def due_held(self, now: int | None = None) -> list[Held]:
        """Take the held notifications whose time has come (oldest first); drop those that expired.

        What it returns is removed from the held list and counted as delivered.
        """
        now = int(self.clock()) if now is None else now
        with _atomic(self.conn):
            due = self._held("WHERE release_at <= ? ORDER BY release_at, held_at", (now,))
            released = []
            for held in due:
                self.conn.execute("DELETE FROM notify_held WHERE id = ?", (held.id,))
                expired = held.expires_at is not None and held.expires_at <= now
                self._count(held.brand_id, held.category, "drop" if expired else "deliver", now)
                if not expired:
                    released.append(held)
        return released

    def held(self, brand_id: str | None = None) -> list[Held]:
        """The notifications held now (only ``brand_id``'s when given), next release first."""
        if brand_id is None:
            return self._held("ORDER BY release_at, held_at", ())
        return self._held("WHERE brand_id = ? ORDER BY release_at, held_at", (brand_id,))

    def _held(self, where: str, params: tuple[object, ...]) -> list[Held]:
        rows = self.conn.execute(
            "SELECT id, ref, brand_id, member, category, held_at, release_at, expires_at"  # noqa: S608
            f" FROM notify_held {where}",
            params,
        ).fetchall()
        return [Held(*tuple(r)) for r in rows]

    # --- counters -----------------------------------------------------------------------------

    def _local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)

    def month_of(self, ms: int) -> str:
        """The household's local month of ``ms``: ``"2026-03"``."""
        return self._local(ms).strftime("%Y-%m")

    def _used_today(self, brand_id: str, now: int) -> int:
        row = self.conn.execute(
            "SELECT count FROM notify_daily WHERE brand_id = ? AND day = ?",
            (brand_id, self._local(now).date().isoformat()),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def _take_slot(self, brand_id: str, now: int) -> None:
        today = self._local(now).date()
        self.conn.execute(
            "INSERT INTO notify_daily (brand_id, day, count) VALUES (?, ?, 1)"
            " ON CONFLICT(brand_id, day) DO UPDATE SET count = count + 1",
            (brand_id, today.isoformat()),
        )
        yesterday = today - timedelta(days=1)  # kept a day more: clocks and zones are not exact
        self.conn.execute("DELETE FROM notify_daily WHERE day < ?", (yesterday.isoformat(),))

    def _count(self, brand_id: str, category: str, action: Action, now: int) -> None:
        self.conn.execute(
            "INSERT INTO notify_counts (brand_id, category, action, month, count) VALUES (?, ?, ?, ?, 1)"
            " ON CONFLICT(brand_id, category, action, month) DO UPDATE SET count = count + 1",
            (brand_id, category, action, self.month_of(now)),
        )

    def counts(self, brand_id: str, month: str | None = None) -> dict[str, dict[str, int]]:
        """``{category: {action: n}}`` for ``brand_id`` in ``month`` (``"YYYY-MM"``, default: this one).

        Every category and action is present, 0 when nothing happened.
        """
        month = self.month_of(int(self.clock())) if month is None else _check_month(month)
        result: dict[str, dict[str, int]] = {c: dict.fromkeys(ACTIONS, 0) for c in CATEGORIES}
        rows = self.conn.execute(
            "SELECT category, action, count FROM notify_counts WHERE brand_id = ? AND month = ?",
            (brand_id, month),
        )
        for category, action, count in rows:
            result.setdefault(str(category), dict.fromkeys(ACTIONS, 0))[str(action)] = int(count)
        return result

    def sentence(
        self, brand_id: str, brand_name: str, category: str, action: str, *, lang: str = "fr",
        month: str | None = None,
    ) -> str:  # fmt: skip
        """:func:`count_sentence` for the counter of ``brand_id`` in ``month`` (default: this one)."""
        n = self.counts(brand_id, month)[_check_category(category)][action]
        return count_sentence(n, category, action, brand_name, lang=lang, month=month)


def _check_month(month: str) -> str:
    if not isinstance(month, str) or not _MONTH_RE.match(month):
        raise ValueError(f"month {month!r} is not valid: expected 'YYYY-MM'")
    return month


# --- sentences --------------------------------------------------------------------------------

_NOUNS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "fr": {
        "transactional": ("message transactionnel", "messages transactionnels"),
        "service": ("message de service", "messages de service"),
        "marketing": ("message publicitaire", "messages publicitaires"),
    },
    "en": {
        "transactional": ("transactional message", "transactional messages"),
        "service": ("service message", "service messages"),
        "marketing": ("marketing message", "marketing messages"),
    },
}
_VERBS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "fr": {
        "deliver": ("remis", "remis"),
        "hold": ("retenu pendant les heures calmes", "retenus pendant les heures calmes"),
        "block": ("bloqué", "bloqués"),
        "drop": ("abandonné car expiré", "abandonnés car expirés"),
    },
    "en": {
        "deliver": ("delivered", "delivered"),
        "hold": ("held during quiet hours", "held during quiet hours"),
        "block": ("blocked", "blocked"),
        "drop": ("dropped as expired", "dropped as expired"),
    },
}
_MONTHS: Final[dict[str, tuple[str, ...]]] = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"),
}  # fmt: skip
_ELIDE = re.compile(r"^[aeiouyàâäéèêëîïôöùûüœæ]", re.IGNORECASE)


def count_sentence(
    n: int, category: str, action: str, brand_name: str, *, lang: str = "fr", month: str | None = None
) -> str:
    """Say a counter: « 23 messages publicitaires de Sportissimo bloqués ce mois-ci. ».

    ``lang`` "fr" or "en" (anything else gives French, as :func:`hub.i18n.say`
    does); ``month`` ``"YYYY-MM"`` names the month, None says "this month".
    French uses the singular for 0 and 1, elides « de » before a vowel
    (« d'Énergie Claire »), and says « Aucun » for 0; English says "No".
    """
    lang = lang if lang in _NOUNS else "fr"
    _check_category(category)
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is unknown; expected one of {', '.join(ACTIONS)}")
    if n < 0:
        raise ValueError(f"n={n}: expected 0 or more")
    if month is None:
        when = "ce mois-ci" if lang == "fr" else "this month"
    else:
        year, number = _check_month(month).split("-")
        name = _MONTHS[lang][int(number) - 1]
        when = f"en {name} {year}" if lang == "fr" else f"in {name} {year}"
    if lang == "fr":
        plural = n > 1
        noun, verb = _NOUNS["fr"][category][plural], _VERBS["fr"][action][plural]
        count = "Aucun" if n == 0 else str(n)
        of = f"d'{brand_name}" if _ELIDE.match(brand_name) else f"de {brand_name}"
        return f"{count} {noun} {of} {verb} {when}."
    plural = n != 1
    noun, verb = _NOUNS["en"][category][plural], _VERBS["en"][action][plural]
    count = "No" if n == 0 else str(n)
    return f"{count} {noun} from {brand_name} {verb} {when}."
