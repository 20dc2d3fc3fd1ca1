"""Sign-ups that look automated (accounts.bots): a trap field filled in, a
missing, forged or old form token, or a form sent back too fast. Nothing is
stored; each refusal is one log line and counted for the owner."""

import logging
import re
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts import bots
from accounts.models import RefusalTally, Signup
from loopback.processes import wait_for
from tests.support.forms import signed

pytestmark = pytest.mark.django_db

ADA = {"name": "Ada Lovelace", "email": "ada@example.com"}
RESEND = "Please check your details and send the form again."
TOKEN = bots.TOKEN_FIELD
Reason = RefusalTally.Reason


@pytest.fixture(autouse=True)
def tally(monkeypatch):
    """A fresh per-worker tally for each test."""
    fresh = bots.Tally()
    monkeypatch.setattr(bots, "tally", fresh)
    return fresh


@pytest.fixture
def bot_log(caplog):
    caplog.set_level(logging.WARNING, logger="accounts.bots")
    return caplog


def page_token(response):
    html = response.content.decode()
    return re.search(r'name="signup_token" value="([^"]+)"', html).group(1)


def counted():
    return dict(RefusalTally.objects.values_list("reason", "count"))


HARD_CASES = [
    pytest.param(signed({**ADA, "leave_empty": "x"}), Reason.TRAP, id="trap"),
    pytest.param(dict(ADA), Reason.NO_TOKEN, id="no-token"),
    pytest.param({**ADA, "signup_token": ""}, Reason.NO_TOKEN, id="empty-token"),
    pytest.param(
        {**ADA, "signup_token": "1AbCdE:forgedsignature"},
        Reason.FORGED_TOKEN,
        id="forged-token",
    ),
    pytest.param(
        signed(ADA, key="another-site-" + "k" * 40), Reason.FORGED_TOKEN, id="other-key"
    ),
]


@pytest.mark.parametrize(("data", "reason"), HARD_CASES)
def test_a_script_gets_the_thank_you_page_and_nothing_is_stored(
    client, bot_log, data, reason
):
    response = client.post(
        "/", data, headers={"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "rid42"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/thanks/"
    assert Signup.objects.count() == 0
    [record] = bot_log.records
    assert record.getMessage() == (
        f"Sign-up refused as automated: {reason.label}"
        " (client 203.0.113.7, request id rid42)"
    )
    assert record.exc_info is None
    assert counted() == {reason: 1}


def test_a_script_with_bad_fields_gets_the_errors_a_person_gets(client):
    response = client.post("/", {"name": "Ada", "email": "broken", "leave_empty": "x"})

    assert response.status_code == 200
    assert "Please enter a valid email address" in response.content.decode()
    assert Signup.objects.count() == 0
    assert counted() == {Reason.TRAP: 1}


@pytest.mark.parametrize(
    "token",
    [signed({})[TOKEN], "1AbCdE:forgedsignature"],
    ids=["a minute old", "forged"],
)
@pytest.mark.parametrize("trap", ["", "x"], ids=["trap empty", "trap filled"])
def test_a_form_with_errors_carries_back_the_token_it_was_sent_with(
    client, token, trap
):
    """Whatever was noticed (a forged token, a filled trap), the page a form
    with errors gets back is the one a person's gets: its own token."""
    data = {"name": "Ada", "email": "broken", "leave_empty": trap, TOKEN: token}

    response = client.post("/", data)

    assert response.status_code == 200
    assert "Please enter a valid email address" in response.content.decode()
    assert page_token(response) == token


def test_a_clock_behind_is_no_refusal_when_the_time_check_is_off(client, settings):
    settings.SIGNUP_MIN_FILL_SECONDS = 0

    response = client.post("/", signed(ADA, age=-5))

    assert response.status_code == 302
    assert Signup.objects.count() == 1


def test_a_trap_filled_after_a_long_pause_is_still_refused(client):
    response = client.post("/", signed({**ADA, "leave_empty": "x"}, age=3600))

    assert response.status_code == 302
    assert Signup.objects.count() == 0


@pytest.mark.parametrize(
    ("age", "reason"),
    [
        pytest.param(0, Reason.TOO_FAST, id="at-once"),
        pytest.param(1.9, Reason.TOO_FAST, id="just-under-the-minimum"),
        pytest.param(-5, Reason.TOO_FAST, id="from-a-clock-ahead"),
        pytest.param(24 * 3600 + 60, Reason.OLD_TOKEN, id="over-a-day-old"),
    ],
)
def test_too_fast_or_too_old_gets_the_form_back_filled_in(
    client, bot_log, settings, age, reason
):
    settings.SIGNUP_MIN_FILL_SECONDS = 2
    sent = signed(ADA, age=age)

    response = client.post("/", sent)

    assert response.status_code == 200
    html = response.content.decode()
    assert RESEND in html
    assert 'value="Ada Lovelace"' in html
    assert 'value="ada@example.com"' in html
    assert page_token(response) != sent["signup_token"]
    assert "errorlist" not in html
    assert Signup.objects.count() == 0
    assert [r.getMessage().split(" (")[0] for r in bot_log.records] == [
        f"Sign-up refused as automated: {reason.label}"
    ]
    assert counted() == {reason: 1}


def test_a_token_just_under_a_day_old_is_accepted(client):
    response = client.post("/", signed(ADA, age=24 * 3600 - 60))

    assert response.status_code == 302
    assert Signup.objects.get().email == "ada@example.com"


def test_a_person_who_was_too_fast_signs_up_with_the_next_click_at_once(
    client, settings
):
    settings.SIGNUP_MIN_FILL_SECONDS = 5
    first = client.post("/", signed(ADA, age=0))
    assert RESEND in first.content.decode()

    second = client.post("/", {**ADA, "signup_token": page_token(first)})

    assert second.status_code == 302
    assert Signup.objects.get().email == "ada@example.com"


def test_the_token_of_a_page_is_good_once_the_minimum_has_passed(client, settings):
    settings.SIGNUP_MIN_FILL_SECONDS = 0.3
    token = page_token(client.get("/"))

    too_soon = client.post("/", {**ADA, "signup_token": token})
    time.sleep(0.35)
    later = client.post("/", {**ADA, "signup_token": token})

    assert too_soon.status_code == 200
    assert later.status_code == 302
    assert Signup.objects.count() == 1


def test_a_minimum_of_zero_stores_at_once_but_still_wants_a_valid_token(
    client, settings
):
    settings.SIGNUP_MIN_FILL_SECONDS = 0

    at_once = client.post("/", signed(ADA, age=0))
    unsigned = client.post("/", {"name": "Bob", "email": "bob@example.com"})

    assert at_once.status_code == unsigned.status_code == 302
    assert list(Signup.objects.values_list("email", flat=True)) == ["ada@example.com"]


def test_a_token_signed_with_a_retired_key_still_counts(client, settings):
    old_key = "retired-secret-key-" + "r" * 40
    settings.SECRET_KEY_FALLBACKS = [old_key]

    response = client.post("/", signed(ADA, key=old_key))

    assert response.status_code == 302
    assert Signup.objects.count() == 1


def test_every_page_carries_a_new_token_outside_the_cached_fields(client):
    first = client.get("/")
    time.sleep(0.002)  # the token holds the time to the millisecond
    second = client.get("/")

    assert page_token(first) != page_token(second)
    assert 0 <= bots.token_age(page_token(first)) < 5


def test_the_trap_is_hidden_unreachable_and_not_autofilled(client):
    html = client.get("/").content.decode()

    trap = re.search(r'<div class="trap" aria-hidden="true">(.*?)</div>', html, re.S)
    assert trap, "the trap's wrapper hides it from assistive technology"
    tag = re.search(r"<input [^>]*>", trap.group(1)).group()
    for attribute in (
        'name="leave_empty"',
        'tabindex="-1"',
        'autocomplete="off"',
        "data-1p-ignore",
        'data-lpignore="true"',
        "data-bwignore",
        'data-form-type="other"',
    ):
        assert attribute in tag
    assert "style=" not in html
    css = Path("signup_site/static/site.css").read_text()
    assert re.search(r"\.trap \{ display: none; \}", css)


def test_the_tally_writes_at_once_then_at_most_every_few_seconds(tally, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(bots.time, "monotonic", lambda: clock[0])
    today = date(2026, 1, 2)

    tally.add(today, Reason.TRAP)
    assert counted() == {Reason.TRAP: 1}

    for _ in range(50):
        tally.add(today, Reason.TRAP)
    tally.add(today, Reason.NO_TOKEN)
    assert counted() == {Reason.TRAP: 1}

    clock[0] += bots.FLUSH_SECONDS
    tally.add(today, Reason.TRAP)
    assert counted() == {Reason.TRAP: 52, Reason.NO_TOKEN: 1}
    assert RefusalTally.objects.get(reason=Reason.TRAP).day == today


def test_a_count_the_database_refuses_is_kept_for_the_next_flush(tally, monkeypatch):
    def broken_cursor():
        raise DatabaseError("the database is away")

    tally.add(timezone.localdate(), Reason.TRAP)
    with monkeypatch.context() as patched:
        patched.setattr(bots.connection, "cursor", broken_cursor)
        tally.add(timezone.localdate(), Reason.TRAP)
        tally.flush()
    assert counted() == {Reason.TRAP: 1}

    tally.flush()

    assert counted() == {Reason.TRAP: 2}


def waiting_on_a_lock(pid):
    with connection.cursor() as cursor:
        # Read inside a transaction, the activity view is a snapshot unless cleared.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
            [pid],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


@pytest.mark.django_db(transaction=True)
def test_workers_flushing_at_once_never_deadlock():
    """Two workers exit together (gunicorn stops them at once), each flushing
    counts it met in its own order: both land, whatever the order."""
    today = timezone.localdate()
    first, middle, last = sorted([Reason.FORGED_TOKEN, Reason.NO_TOKEN, Reason.TRAP])
    RefusalTally.objects.bulk_create(
        RefusalTally(day=today, reason=reason, count=0)
        for reason in (first, middle, last)
    )
    # One worker met the reasons in sorted order, the other in another.
    workers = {"one": [first, middle, last], "other": [last, first]}
    tallies = {}
    for name, reasons in workers.items():
        tallies[name] = bots.Tally()
        tallies[name].flushed_at = time.monotonic()
        for reason in reasons:
            tallies[name].add(today, reason)
    pids = {}

    def flush(name):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pids[name] = cursor.fetchone()[0]
        try:
            tallies[name].flush()
        finally:
            connection.close()

    # A third session holds the middle row, so that each flush is caught
    # holding what it locked first.
    with transaction.atomic():
        RefusalTally.objects.select_for_update().get(reason=middle)
        threads = {}
        for name in workers:
            threads[name] = threading.Thread(target=flush, args=(name,))
            threads[name].start()
            wait_for(
                lambda name=name: name in pids and waiting_on_a_lock(pids[name]),
                timeout=10,
                message=f"{name} flush waiting on a row",
            )
    for thread in threads.values():
        thread.join(timeout=30)

    assert {name: dict(t.pending) for name, t in tallies.items()} == {
        "one": {},
        "other": {},
    }
    assert counted() == {first: 2, middle: 1, last: 2}
