"""Quiet by default (hub/policy.py): categories, quiet hours, daily caps, expiry, counters.

Every test runs on a controllable clock, in Paris local time unless it says
otherwise; nothing sleeps.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.policy import CATEGORIES, Decision, NotificationPolicy, QuietHours, count_sentence
from hub.sqlite import connect_sqlite

PARIS = ZoneInfo("Europe/Paris")
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: ZoneInfo = PARIS) -> int:
    """Milliseconds since the epoch of a local wall-clock time."""
    return int(datetime(year, month, day, hour, minute, tzinfo=tz).timestamp() * 1000)


class Clock:
    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def set(self, ms: int) -> None:
        self.now = ms

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> Clock:
    return Clock(paris(2026, 3, 10, 12, 0))  # a Tuesday at noon


@pytest.fixture
def policy(conn: sqlite3.Connection, clock: Clock) -> NotificationPolicy:
    return NotificationPolicy(conn, clock)


# --- categories -------------------------------------------------------------------------------


def test_transactional_and_service_are_on_and_marketing_off_by_default(policy: NotificationPolicy) -> None:
    assert policy.allowed("sportissimo") == {"transactional": True, "service": True, "marketing": False}
    assert policy.decide("sportissimo", "alice", "transactional") == Decision("deliver", "allowed")
    assert policy.decide("sportissimo", "alice", "service") == Decision("deliver", "allowed")
    assert policy.decide("sportissimo", "alice", "marketing") == Decision("block", "category_off")


def test_marketing_without_consent_is_never_delivered_at_any_hour_or_for_anyone(
    policy: NotificationPolicy, clock: Clock
) -> None:
    policy.allow("energie-claire", "marketing")  # another brand's consent does not count
    policy.set_cap("sportissimo", 1000)
    start = paris(2026, 3, 1)
    for step in range(0, 31 * 24 * 4):  # every quarter of an hour for a month
        clock.set(start + step * 15 * MINUTE)
        member = ("household", "alice", "bob")[step % 3]
        expires = None if step % 2 else clock.now + DAY
        decision = policy.decide("sportissimo", member, "marketing", expires)
        assert decision == Decision("block", "category_off")
    assert policy.held() == []
    assert policy.due_held(start + 60 * DAY) == []
    march, april = (policy.counts("sportissimo", m)["marketing"] for m in ("2026-03", "2026-04"))
    # March has one hour less in Paris (summer time): the last hour of UTC March is in April there.
    assert march == {"deliver": 0, "hold": 0, "block": 31 * 24 * 4 - 4, "drop": 0}
    assert april["block"] == 4


def test_marketing_turned_on_is_delivered_and_turned_off_is_blocked_again(policy: NotificationPolicy) -> None:
    policy.allow("sportissimo", "marketing")
    assert policy.allowed("sportissimo")["marketing"]
    assert policy.decide("sportissimo", "alice", "marketing").action == "deliver"
    assert policy.decide("energie-claire", "alice", "marketing").action == "block"
    policy.allow("sportissimo", "marketing", allowed=False)
    assert policy.decide("sportissimo", "alice", "marketing") == Decision("block", "category_off")
    policy.allow("sportissimo", "transactional", allowed=False)
    assert policy.decide("sportissimo", "alice", "transactional") == Decision("block", "category_off")


def test_a_blocked_category_wins_over_everything_else(policy: NotificationPolicy, clock: Clock) -> None:
    clock.set(paris(2026, 3, 10, 23, 0))
    assert policy.decide("sportissimo", "alice", "marketing", clock.now - 1).reason == "category_off"


# --- quiet hours ------------------------------------------------------------------------------


def test_quiet_hours_hold_until_their_end_and_release_then(policy: NotificationPolicy, clock: Clock) -> None:
    clock.set(paris(2026, 3, 10, 23, 15))
    decision = policy.decide("sportissimo", "alice", "service", ref="env-0001")
    assert decision.action == "hold"
    assert decision.reason == "quiet_hours"
    assert decision.release_at == paris(2026, 3, 11, 7, 30)
    assert decision.held_id is not None
    (held,) = policy.held("sportissimo")
    assert (held.id, held.ref, held.member, held.category) == (
        decision.held_id,
        "env-0001",
        "alice",
        "service",
    )
    assert (held.held_at, held.release_at) == (clock.now, paris(2026, 3, 11, 7, 30))
    assert policy.due_held(paris(2026, 3, 11, 7, 29)) == []
    assert policy.due_held(paris(2026, 3, 11, 7, 30)) == [held]
    assert policy.due_held(paris(2026, 3, 11, 7, 31)) == []  # handed out once
    assert policy.held() == []
    counts = policy.counts("sportissimo", "2026-03")["service"]
    assert (counts["hold"], counts["deliver"]) == (1, 1)


def test_due_held_uses_the_clock_by_default_and_returns_the_oldest_first(
    policy: NotificationPolicy, clock: Clock
) -> None:
    clock.set(paris(2026, 3, 10, 22, 0))
    first = policy.decide("sportissimo", "alice", "transactional", ref="env-0001")
    clock.advance(HOUR)
    second = policy.decide("energie-claire", "bob", "transactional", ref="env-0002")
    assert first.release_at == second.release_at == paris(2026, 3, 11, 7, 30)
    assert policy.due_held() == []
    clock.set(paris(2026, 3, 11, 8, 0))
    assert [h.ref for h in policy.due_held()] == ["env-0001", "env-0002"]


@pytest.mark.parametrize(
    ("hour", "minute", "action", "release"),
    [
        (21, 59, "deliver", None),
        (22, 0, "hold", (11, 7, 30)),
        (0, 0, "hold", (10, 7, 30)),
        (3, 0, "hold", (10, 7, 30)),
        (7, 29, "hold", (10, 7, 30)),
        (7, 30, "deliver", None),
        (12, 0, "deliver", None),
    ],
)
def test_the_quiet_window_spans_midnight_start_included_end_excluded(
    *,
    policy: NotificationPolicy,
    clock: Clock,
    hour: int,
    minute: int,
    action: str,
    release: tuple[int, int, int] | None,
) -> None:
    clock.set(paris(2026, 3, 10, hour, minute))
    decision = policy.decide("sportissimo", "alice", "transactional")
    assert decision.action == action
    assert decision.release_at == (None if release is None else paris(2026, 3, *release))


def test_release_is_at_the_end_of_quiet_hours_across_daylight_saving_changes(
    policy: NotificationPolicy, clock: Clock
) -> None:
    # Summer time starts in the night of 28-29 March 2026, ends in the night of 24-25 October.
    clock.set(paris(2026, 3, 28, 23, 0))
    spring = policy.decide("sportissimo", "alice", "service")
    assert spring.release_at == paris(2026, 3, 29, 7, 30)
    assert spring.release_at - clock.now == 7 * HOUR + 30 * MINUTE  # one hour less than usual
    clock.set(paris(2026, 10, 24, 23, 0))
    autumn = policy.decide("sportissimo", "alice", "service")
    assert autumn.release_at == paris(2026, 10, 25, 7, 30)
    assert autumn.release_at - clock.now == 9 * HOUR + 30 * MINUTE


def test_quiet_hours_are_per_member_with_the_household_as_default(
    policy: NotificationPolicy, clock: Clock
) -> None:
    policy.set_quiet_hours("household", "21:00-08:00")
    policy.set_quiet_hours("alice", "23:30-06:00")
    policy.set_quiet_hours("bob", None)  # Bob wants no quiet hours
    assert str(policy.quiet_hours("alice")) == "23:30-06:00"
    assert str(policy.quiet_hours("carol")) == "21:00-08:00"
    assert policy.quiet_hours("bob") is None
    clock.set(paris(2026, 3, 10, 22, 0))
    assert policy.decide("sportissimo", "alice", "service").action == "deliver"
    assert policy.decide("sportissimo", "carol", "service").release_at == paris(2026, 3, 11, 8, 0)
    assert policy.decide("sportissimo", "household", "service").release_at == paris(2026, 3, 11, 8, 0)
    assert policy.decide("sportissimo", "bob", "transactional").action == "deliver"
    policy.reset_quiet_hours("alice")
    assert str(policy.quiet_hours("alice")) == "21:00-08:00"
    policy.reset_quiet_hours("household")
    assert str(policy.quiet_hours("alice")) == "22:00-07:30"


def test_quiet_hours_in_another_time_zone_and_within_a_day(policy: NotificationPolicy, clock: Clock) -> None:
    new_york = ZoneInfo("America/New_York")
    policy.set_quiet_hours("dan", "22:00-07:00", tz="America/New_York")
    clock.set(paris(2026, 3, 11, 4, 0))  # 23:00 the day before in New York
    assert policy.decide("sportissimo", "dan", "service").release_at == paris(2026, 3, 11, 7, 0, tz=new_york)
    policy.set_quiet_hours("eve", "13:00-14:00")  # a nap
    clock.set(paris(2026, 3, 11, 13, 20))
    assert policy.decide("sportissimo", "eve", "service").release_at == paris(2026, 3, 11, 14, 0)
    clock.set(paris(2026, 3, 11, 14, 0))
    assert policy.decide("sportissimo", "eve", "service").action == "deliver"


def test_a_policy_without_default_quiet_hours_delivers_at_night(
    conn: sqlite3.Connection, clock: Clock
) -> None:
    policy = NotificationPolicy(conn, clock, quiet_hours=None)
    clock.set(paris(2026, 3, 10, 3, 0))
    assert policy.decide("sportissimo", "alice", "service").action == "deliver"


@pytest.mark.parametrize("spec", ["22:00", "22h-7h", "24:00-07:00", "22:00-07:60", "07:00-07:00", "", "a-b"])
def test_bad_quiet_hours_are_refused(policy: NotificationPolicy, spec: str) -> None:
    with pytest.raises(ValueError, match="quiet hours"):
        policy.set_quiet_hours("alice", spec)


def test_quiet_hours_parse_and_print() -> None:
    quiet = QuietHours.parse(" 22:00 - 07:30 ")
    assert (quiet.start, quiet.end, quiet.tz, str(quiet)) == (
        22 * 60,
        7 * 60 + 30,
        "Europe/Paris",
        "22:00-07:30",
    )
    with pytest.raises(Exception, match="Nowhere"):
        QuietHours.parse("22:00-07:30", "Nowhere/City")


# --- expiry -----------------------------------------------------------------------------------


def test_an_expired_notification_is_dropped(policy: NotificationPolicy, clock: Clock) -> None:
    assert policy.decide("sportissimo", "alice", "transactional", clock.now - 1) == Decision(
        "drop", "expired"
    )
    assert policy.decide("sportissimo", "alice", "transactional", clock.now) == Decision("drop", "expired")
    assert policy.decide("sportissimo", "alice", "transactional", clock.now + 1).action == "deliver"


def test_one_that_would_expire_during_quiet_hours_is_dropped_not_held(
    policy: NotificationPolicy, clock: Clock
) -> None:
    clock.set(paris(2026, 3, 10, 23, 0))
    flash_sale_end = paris(2026, 3, 11, 6, 0)
    decision = policy.decide("sportissimo", "alice", "service", flash_sale_end)
    assert decision == Decision("drop", "expires_during_quiet_hours")
    assert policy.held() == []
    kept = policy.decide("sportissimo", "alice", "service", paris(2026, 3, 11, 9, 0))
    assert kept.action == "hold"


def test_a_held_notification_that_expired_before_release_is_dropped_at_release(
    policy: NotificationPolicy, clock: Clock
) -> None:
    clock.set(paris(2026, 3, 10, 23, 0))
    policy.decide("sportissimo", "alice", "service", paris(2026, 3, 11, 9, 0), ref="env-0001")
    policy.decide("sportissimo", "alice", "service", paris(2026, 3, 11, 20, 0), ref="env-0002")
    # The hub was off all morning: at 10:00 the first one is no longer worth showing.
    assert [h.ref for h in policy.due_held(paris(2026, 3, 11, 10, 0))] == ["env-0002"]
    assert policy.held() == []
    counts = policy.counts("sportissimo", "2026-03")["service"]
    assert (counts["hold"], counts["deliver"], counts["drop"]) == (2, 1, 1)


# --- daily caps -------------------------------------------------------------------------------


def test_the_daily_cap_blocks_beyond_five_per_brand_and_resets_the_next_local_day(
    policy: NotificationPolicy, clock: Clock
) -> None:
    actions = [policy.decide("sportissimo", "alice", "service").action for _ in range(7)]
    assert actions == ["deliver"] * 5 + ["block"] * 2
    assert policy.decide("sportissimo", "alice", "service") == Decision("block", "daily_cap")
    assert policy.decide("energie-claire", "alice", "service").action == "deliver"  # per brand
    clock.set(paris(2026, 3, 10, 21, 59))
    assert policy.decide("sportissimo", "alice", "service").action == "block"  # still the same day
    clock.set(paris(2026, 3, 11, 8, 0))
    assert policy.decide("sportissimo", "alice", "service").action == "deliver"


def test_the_cap_counts_service_and_marketing_together_but_not_transactional(
    policy: NotificationPolicy,
) -> None:
    policy.allow("sportissimo", "marketing")
    for _ in range(3):
        assert policy.decide("sportissimo", "alice", "marketing").action == "deliver"
    for _ in range(2):
        assert policy.decide("sportissimo", "alice", "service").action == "deliver"
    assert policy.decide("sportissimo", "alice", "marketing").reason == "daily_cap"
    assert policy.decide("sportissimo", "alice", "service").reason == "daily_cap"
    for _ in range(20):
        assert policy.decide("sportissimo", "alice", "transactional").action == "deliver"


def test_held_notifications_take_a_slot_and_blocked_or_expired_ones_do_not(
    policy: NotificationPolicy, clock: Clock
) -> None:
    policy.decide("sportissimo", "alice", "marketing")  # blocked: no slot
    policy.decide("sportissimo", "alice", "service", clock.now - 1)  # expired: no slot
    for _ in range(3):
        assert policy.decide("sportissimo", "alice", "service").action == "deliver"
    clock.set(paris(2026, 3, 10, 23, 0))
    assert policy.decide("sportissimo", "alice", "service").action == "hold"
    assert policy.decide("sportissimo", "alice", "service").action == "hold"
    assert policy.decide("sportissimo", "alice", "service").reason == "daily_cap"
    assert len(policy.due_held(paris(2026, 3, 11, 7, 30))) == 2


def test_the_cap_is_configurable_per_brand_and_by_default(conn: sqlite3.Connection, clock: Clock) -> None:
    policy = NotificationPolicy(conn, clock, daily_cap=2, capped=["service", "marketing", "transactional"])
    policy.set_cap("energie-claire", 0)
    policy.set_cap("sportissimo", 3)
    assert (policy.cap("energie-claire"), policy.cap("sportissimo"), policy.cap("other")) == (0, 3, 2)
    assert policy.decide("energie-claire", "alice", "transactional").reason == "daily_cap"
    assert [policy.decide("sportissimo", "alice", "transactional").action for _ in range(4)] == (
        ["deliver"] * 3 + ["block"]
    )
    assert [policy.decide("other", "alice", "service").action for _ in range(3)] == ["deliver"] * 2 + [
        "block"
    ]
    policy.set_cap("sportissimo", None)
    assert policy.cap("sportissimo") == 2
    with pytest.raises(ValueError, match="per_day"):
        policy.set_cap("sportissimo", -1)
    with pytest.raises(ValueError, match="daily_cap"):
        NotificationPolicy(conn, clock, daily_cap=-1)


# --- counters and sentences -------------------------------------------------------------------


def test_counters_per_brand_category_action_and_local_month(policy: NotificationPolicy, clock: Clock) -> None:
    clock.set(paris(2026, 3, 31, 23, 30))  # still March in Paris, already 21:30 UTC
    for _ in range(23):
        policy.decide("sportissimo", "alice", "marketing")
    policy.decide("sportissimo", "alice", "transactional")  # held: quiet hours
    clock.set(paris(2026, 4, 1, 0, 30))  # April in Paris, still 31 March in UTC
    policy.decide("sportissimo", "alice", "marketing")
    march = policy.counts("sportissimo", "2026-03")
    assert march["marketing"] == {"deliver": 0, "hold": 0, "block": 23, "drop": 0}
    assert march["transactional"] == {"deliver": 0, "hold": 1, "block": 0, "drop": 0}
    assert march["service"] == {"deliver": 0, "hold": 0, "block": 0, "drop": 0}
    assert policy.counts("sportissimo")["marketing"]["block"] == 1  # this month: April
    policy.due_held(paris(2026, 4, 1, 7, 30))
    assert policy.counts("sportissimo", "2026-04")["transactional"]["deliver"] == 1  # released in April
    assert policy.counts("energie-claire", "2026-03") == {
        c: dict.fromkeys(("deliver", "hold", "block", "drop"), 0) for c in CATEGORIES
    }
    assert policy.month_of(paris(2026, 3, 31, 23, 30)) == "2026-03"
    with pytest.raises(ValueError, match="YYYY-MM"):
        policy.counts("sportissimo", "2026-3")


def test_counters_survive_a_restart(db: Path, clock: Clock) -> None:
    conn = connect_sqlite(db)
    policy = NotificationPolicy(conn, clock)
    for _ in range(4):
        policy.decide("sportissimo", "alice", "marketing")
    conn.close()
    conn = connect_sqlite(db)
    try:
        assert NotificationPolicy(conn, clock).counts("sportissimo")["marketing"]["block"] == 4
    finally:
        conn.close()


def test_a_decision_in_the_callers_transaction_rolls_back_with_it(
    policy: NotificationPolicy, conn: sqlite3.Connection, clock: Clock
) -> None:
    clock.set(paris(2026, 3, 10, 23, 0))
    conn.execute("BEGIN IMMEDIATE")
    assert policy.decide("sportissimo", "alice", "service").action == "hold"
    conn.execute("ROLLBACK")
    assert policy.held() == []
    assert policy.counts("sportissimo")["service"]["hold"] == 0


def test_the_counter_sentence_in_french_and_english(policy: NotificationPolicy) -> None:
    for _ in range(23):
        policy.decide("sportissimo", "alice", "marketing")
    assert (
        policy.sentence("sportissimo", "Sportissimo", "marketing", "block")
        == "23 messages publicitaires de Sportissimo bloqués ce mois-ci."
    )
    assert (
        policy.sentence("sportissimo", "Sportissimo", "marketing", "block", lang="en")
        == "23 marketing messages from Sportissimo blocked this month."
    )
    assert (
        policy.sentence("sportissimo", "Sportissimo", "marketing", "block", lang="en", month="2026-02")
        == "No marketing messages from Sportissimo blocked in February 2026."
    )


@pytest.mark.parametrize(
    ("n", "category", "action", "brand", "lang", "month", "expected"),
    [
        (0, "service", "hold", "Sportissimo", "fr", None,
         "Aucun message de service de Sportissimo retenu pendant les heures calmes ce mois-ci."),
        (1, "marketing", "block", "Énergie Claire", "fr", None,
         "1 message publicitaire d'Énergie Claire bloqué ce mois-ci."),
        (2, "transactional", "deliver", "Sportissimo", "fr", "2026-08",
         "2 messages transactionnels de Sportissimo remis en août 2026."),
        (5, "service", "drop", "Orange", "fr", None,
         "5 messages de service d'Orange abandonnés car expirés ce mois-ci."),
        (1, "service", "drop", "Sportissimo", "en", None,
         "1 service message from Sportissimo dropped as expired this month."),
        (3, "service", "hold", "Sportissimo", "en", "2026-12",
         "3 service messages from Sportissimo held during quiet hours in December 2026."),
        (7, "transactional", "deliver", "Sportissimo", "de", None,
         "7 messages transactionnels de Sportissimo remis ce mois-ci."),  # unknown language: French
    ],
)  # fmt: skip
def test_count_sentences(
    *, n: int, category: str, action: str, brand: str, lang: str, month: str | None, expected: str
) -> None:
    assert count_sentence(n, category, action, brand, lang=lang, month=month) == expected


def test_bad_categories_actions_and_members_are_refused(policy: NotificationPolicy) -> None:
    with pytest.raises(ValueError, match="category 'spam'"):
        policy.decide("sportissimo", "alice", "spam")
    with pytest.raises(ValueError, match="member"):
        policy.decide("sportissimo", "", "service")
    with pytest.raises(ValueError, match="brand id"):
        policy.allow("Sportissimo!", "marketing")
    with pytest.raises(ValueError, match="action 'shout'"):
        count_sentence(1, "service", "shout", "X")
    with pytest.raises(ValueError, match="n=-1"):
        count_sentence(-1, "service", "block", "X")
    assert policy.counts("sportissimo")["service"] == dict.fromkeys(("deliver", "hold", "block", "drop"), 0)


def test_the_day_table_keeps_only_recent_days(
    policy: NotificationPolicy, conn: sqlite3.Connection, clock: Clock
) -> None:
    for day in range(10):
        clock.set(paris(2026, 3, 1, 12) + day * DAY)
        policy.decide("sportissimo", "alice", "service")
    days = [r[0] for r in conn.execute("SELECT day FROM notify_daily ORDER BY day")]
    assert days == ["2026-03-09", "2026-03-10"]
    assert (datetime.fromisoformat(days[-1]) - datetime.fromisoformat(days[0])) == timedelta(days=1)


def test_a_legacy_mode_connection_commits_every_change(tmp_path: Path, clock: Clock) -> None:
    legacy = sqlite3.connect(tmp_path / "legacy.db")  # default isolation_level, tuple rows
    try:
        policy = NotificationPolicy(legacy, clock)
        policy.allow("sportissimo", "marketing")
        policy.set_cap("sportissimo", 1)
        policy.set_quiet_hours("alice", "01:00-02:00")
        assert policy.decide("sportissimo", "alice", "marketing").action == "deliver"
        assert not legacy.in_transaction
        other = sqlite3.connect(tmp_path / "legacy.db")
        try:
            assert other.execute("SELECT COUNT(*) FROM notify_categories").fetchone()[0] == 1
            assert other.execute("SELECT SUM(count) FROM notify_counts").fetchone()[0] == 1
        finally:
            other.close()
    finally:
        legacy.close()
