"""When a brand's people are there: the manifest's ``humans`` hours, read in the brand's time zone.

``hours`` maps a weekday (``mon`` … ``sun``) to ranges ``"HH:MM-HH:MM"`` in the local time
of ``timezone``. A range ends at ``24:00`` at the latest on its own day; one whose end is not
after its start (``"22:00-02:00"``) runs past midnight into the next day. A day with no
entry is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.protocol import Humans

__all__ = ["check_hours", "humans_open_now", "next_opening"]

Lang = Literal["fr", "en"]

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAY_KEYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAYS: dict[Lang, tuple[str, ...]] = {
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_TODAY: dict[Lang, tuple[str, str]] = {"fr": ("aujourd'hui", "demain"), "en": ("today", "tomorrow")}


@dataclass(frozen=True)
class _Range:
    start: int  # minutes after midnight
    end: int  # minutes after midnight, up to 24 × 60; <= start means "past midnight"


def _minutes(value: str, text: str, *, end: bool) -> int:
    hours, minutes = int(value[:2]), int(value[3:])
    limit = 24 if end else 23
    if hours > limit or minutes > 59 or (hours == 24 and minutes):
        raise ValueError(f"opening hours {text!r}: {value!r} is not a time (expected 00:00 to 24:00)")
    return hours * 60 + minutes


def _parse(text: str) -> _Range:
    start, _, end = text.partition("-")
    if len(start) != 5 or len(end) != 5 or start[2] != ":" or end[2] != ":":
        raise ValueError(f"opening hours {text!r}: expected HH:MM-HH:MM")
    parsed = _Range(_minutes(start, text, end=False), _minutes(end, text, end=True))
    if parsed.start == parsed.end:
        raise ValueError(f"opening hours {text!r}: the range is empty")
    return parsed


def _zone(humans: Humans) -> ZoneInfo:
    try:
        return ZoneInfo(humans.timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(
            f"humans.timezone {humans.timezone!r} is not a known time zone (expected e.g. 'Europe/Paris')"
        ) from err


def check_hours(humans: Humans) -> None:
    """Raise ``ValueError`` naming the bad value if the time zone or a range cannot be read."""
    _zone(humans)
    for ranges in humans.hours.values():
        for text in ranges:
            _parse(text)


def _intervals(humans: Humans, around: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """Every opening from the day before ``around`` to a week after, as aware datetimes."""
    out: list[tuple[datetime, datetime]] = []
    for offset in range(-1, 8):
        day = around + timedelta(days=offset)
        for text in humans.hours.get(DAY_KEYS[day.weekday()], []):
            span = _parse(text)
            start = datetime.combine(day, time(span.start // 60, span.start % 60), zone)
            end_day = day + timedelta(days=1) if span.end <= span.start or span.end == 24 * 60 else day
            end_minutes = span.end % (24 * 60)
            end = datetime.combine(end_day, time(end_minutes // 60, end_minutes % 60), zone)
            out.append((start, end))
    return out


def _local(humans: Humans, now: datetime) -> tuple[datetime, ZoneInfo]:
    if now.tzinfo is None:
        raise ValueError(f"now={now!r} has no time zone; pass an aware datetime")
    zone = _zone(humans)
    return now.astimezone(zone), zone


def humans_open_now(humans: Humans, now: datetime) -> bool:
    """Whether the brand's people are there at ``now`` (an aware datetime)."""
    if not humans.available:
        return False
    local, zone = _local(humans, now)
    return any(start <= local < end for start, end in _intervals(humans, local.date(), zone))


def next_opening(humans: Humans, now: datetime, lang: Lang = "fr") -> str | None:
    """When the brand's people are next there after ``now``: ``"lundi 09:00"``, ``"today 14:00"``.

    The day is ``aujourd'hui``/``today``, ``demain``/``tomorrow`` or the weekday's name; the
    time is local to ``humans.timezone``. ``None`` if the brand has no people or no hours.
    """
    if not humans.available:
        return None
    local, zone = _local(humans, now)
    starts = [start for start, _ in _intervals(humans, local.date(), zone) if start > local]
    if not starts:
        return None
    first = min(starts)
    days = (first.date() - local.date()).days
    day = _TODAY[lang][days] if days < 2 else _DAYS[lang][first.weekday()]
    return f"{day} {first:%H:%M}"
