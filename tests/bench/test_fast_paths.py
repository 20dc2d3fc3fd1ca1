"""
Some paths are written for speed; what they do is what the plain way does:
a sign-up is one exchange with the server; the export formats timestamps in
PostgreSQL; the admin finds its date hierarchy with index lookups, counts a
one-page result from the page, and hides the date drill-down while searching.
Each is checked here against what Django itself (or the plain way, written
out here) gives.
"""

import csv
import io
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from psycopg.pq import Trace

from accounts.admin import ChangeListQuerySet, FirstPagePaginator
from accounts.export import csv_batches, csv_chunks, neutralise
from accounts.models import Signup
from tests.support.forms import signed

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/accounts/signup/"

# Around the turns of a year, a month and a day, in UTC and in New York.
MOMENTS = [
    datetime(2023, 3, 14, 15, 9, 26, 535897, tzinfo=UTC),
    datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC),
    datetime(2025, 1, 1, 4, 30, 0, 1, tzinfo=UTC),
    datetime(2025, 2, 28, 12, 0, 0, 250000, tzinfo=UTC),
    datetime(2025, 3, 1, 3, 0, 0, tzinfo=UTC),
    datetime(2025, 3, 1, 6, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 26, 9, 30, 0, tzinfo=UTC),
]


@pytest.fixture
def signups():
    rows = []
    for number, moment in enumerate(MOMENTS):
        signup = Signup.objects.create(
            name=f"Person {number}", email=f"person{number}@example.com"
        )
        # Every other one confirmed a little later, across the same turns.
        confirmed = {"status": "confirmed", "confirmed_at": moment + timedelta(hours=5)}
        Signup.objects.filter(pk=signup.pk).update(
            signed_up_at=moment, **(confirmed if number % 2 else {})
        )
        rows.append(Signup.objects.get(pk=signup.pk))
    return rows


def python_csv(queryset):
    """The export with timestamps formatted in Python, as Django would."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ("name", "email", "signed_up_at", "status", "confirmed_at", "consent_version")
    )
    for signup in queryset.order_by("signed_up_at", "id"):
        confirmed_at = signup.confirmed_at.isoformat() if signup.confirmed_at else ""
        writer.writerow(
            (
                neutralise(signup.name),
                neutralise(signup.email),
                signup.signed_up_at.isoformat(),
                signup.status,
                confirmed_at,
                signup.consent_version,
            )
        )
    return out.getvalue()


@contextmanager
def exchanges():
    """The statements sent on Django's connection, one per exchange with the
    server: what libpq's trace shows between two ReadyForQuery messages."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    sent = []
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        try:
            yield sent
        finally:
            pgconn.untrace()
        trace.seek(0)
        statements = []
        for line in trace.read().decode().splitlines():
            sender, _length, message, *rest = line.split("\t")
            if sender == "F" and message in ("Query", "Parse"):
                # Query "SQL", or Parse "name" "SQL" ...: the SQL, unquoted.
                statements.append(
                    rest[0].strip().removeprefix('"" ')[1:].rpartition('"')[0]
                )
            elif sender == "B" and message == "ReadyForQuery":
                sent.append(" ".join(statements))
                statements = []


@pytest.mark.django_db(transaction=True)
def test_register_is_one_exchange_with_no_transaction_around_it():
    with exchanges() as sent:
        Signup.objects.register({"name": "Ada", "email": "ada@example.com"})

    assert len(sent) == 1, sent
    assert sent[0].startswith('INSERT INTO "accounts_signup"'), sent
    assert sent[0].endswith("ON CONFLICT DO NOTHING"), sent
    Signup.objects.register({"name": "Someone", "email": "ADA@example.com"})
    assert list(Signup.objects.values_list("name", "email")) == [
        ("Ada", "ada@example.com")
    ]


@pytest.mark.django_db(transaction=True)
def test_a_sign_up_costs_two_exchanges_the_health_check_and_the_insert(client):
    client.get("/")
    token = client.cookies["csrftoken"].value
    form = signed(
        {"csrfmiddlewaretoken": token, "name": "Ada", "email": "ada@example.com"}
    )

    with exchanges() as sent:
        # What request_started does under gunicorn (the test client does not).
        connection.close_if_unusable_or_obsolete()
        response = client.post("/", form)

    assert response.status_code == 302
    assert [statement.split()[0] for statement in sent] == ["SELECT", "INSERT"], sent
    assert sent[0] == "SELECT 1"


@pytest.mark.parametrize("time_zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_the_export_is_the_same_text_as_before(signups, time_zone):
    with override_settings(TIME_ZONE=time_zone):
        assert "".join(csv_chunks(Signup.objects.all())) == python_csv(
            Signup.objects.all()
        )


def test_exported_timestamps_are_isoformat_in_utc(signups):
    rows = list(csv.reader(io.StringIO("".join(csv_chunks(Signup.objects.all())))))

    assert [row[2] for row in rows[1:]] == [
        signup.signed_up_at.isoformat() for signup in signups
    ]
    assert rows[3][2] == "2025-01-01T00:00:00+00:00"
    assert rows[4][2] == "2025-01-01T04:30:00.000001+00:00"


def test_the_export_comes_in_batches_of_rows_after_the_header(signups):
    queryset = Signup.objects.all()

    batches = list(csv_batches(queryset, size=3))

    assert [rows for _text, rows in batches] == [0, 3, 3, 2]
    assert [text.count("\r\n") for text, _rows in batches] == [1, 3, 3, 2]
    assert batches[0][0] == (
        "name,email,signed_up_at,status,confirmed_at,consent_version\r\n"
    )
    assert list(csv_chunks(queryset, size=3)) == [text for text, _rows in batches]
    assert "".join(csv_chunks(queryset)) == python_csv(queryset)


def admin_queryset():
    return ChangeListQuerySet(model=Signup)


@pytest.mark.parametrize("time_zone", ["UTC", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize("kind", ["year", "month", "day"])
@pytest.mark.parametrize("order", ["ASC", "DESC"])
def test_the_date_hierarchy_finds_what_django_finds(signups, time_zone, kind, order):
    with override_settings(TIME_ZONE=time_zone):
        for queryset, reference in (
            (admin_queryset(), Signup.objects.all()),
            (
                admin_queryset().filter(signed_up_at__year=2025),
                Signup.objects.filter(signed_up_at__year=2025),
            ),
            (
                admin_queryset().filter(name__icontains="person 1"),
                Signup.objects.filter(name__icontains="person 1"),
            ),
        ):
            assert list(queryset.datetimes("signed_up_at", kind, order)) == list(
                reference.datetimes("signed_up_at", kind, order)
            )


def test_the_date_hierarchy_of_nothing_is_empty():
    assert admin_queryset().datetimes("signed_up_at", "year") == []


@pytest.mark.parametrize("rows", [0, 1, 99, 100, 101, 250])
def test_the_paginator_counts_and_pages_like_djangos(rows):
    Signup.objects.bulk_create(
        Signup(name=f"P{number}", email=f"p{number}@example.com")
        for number in range(rows)
    )
    queryset = Signup.objects.order_by("-id")

    paginator = FirstPagePaginator(queryset, 100)

    assert paginator.count == rows
    assert paginator.num_pages == max(1, -(-rows // 100))
    assert list(paginator.page(1).object_list) == list(queryset[:100])
    if rows > 100:
        assert list(paginator.page(2).object_list) == list(queryset[100:200])


def search_queries(queries):
    return [
        query["sql"]
        for query in queries
        if "accounts_signup" in query["sql"] and "LIKE" in query["sql"]
    ]


def test_a_one_page_search_runs_once_and_lists_the_same(admin_client, signups):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST, {"q": "person1@example"})

    assert response.status_code == 200
    assert [s.email for s in response.context["cl"].result_list] == [
        "person1@example.com"
    ]
    assert response.context["cl"].result_count == 1
    assert len(search_queries(queries)) == 1
    assert "1 result" in response.content.decode()


def test_a_longer_search_is_counted_and_paged(admin_client):
    Signup.objects.bulk_create(
        Signup(name=f"Grace {number}", email=f"grace{number}@example.com")
        for number in range(150)
    )

    first = admin_client.get(CHANGELIST, {"q": "grace"})
    second = admin_client.get(CHANGELIST, {"q": "grace", "p": "2"})

    assert first.context["cl"].result_count == 150
    assert len(first.context["cl"].result_list) == 100
    assert len(second.context["cl"].result_list) == 50
    shown = {s.pk for s in first.context["cl"].result_list} | {
        s.pk for s in second.context["cl"].result_list
    }
    assert len(shown) == 150


def test_no_date_drill_down_while_searching(admin_client, signups):
    browsing = admin_client.get(CHANGELIST)
    searching = admin_client.get(CHANGELIST, {"q": "person"})

    assert browsing.context["cl"].date_hierarchy == "signed_up_at"
    assert 'class="toplinks"' in browsing.content.decode()  # the drill-down bar
    assert searching.context["cl"].date_hierarchy is None
    assert 'class="toplinks"' not in searching.content.decode()


def test_the_date_drill_down_links_still_filter(admin_client, signups):
    years = admin_client.get(CHANGELIST)
    months = admin_client.get(CHANGELIST, {"signed_up_at__year": "2025"})

    assert "?signed_up_at__year=2023" in years.content.decode()
    assert "?signed_up_at__year=2026" in years.content.decode()
    listed = {s.signed_up_at.year for s in months.context["cl"].result_list}
    assert listed == {2025}
    assert "signed_up_at__month=3" in months.content.decode()


def test_the_list_counts_everything_without_a_second_count(admin_client, signups):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST)

    # The paginator's COUNT (the chart's per-day COUNT(*) is another matter).
    counts = [q["sql"] for q in queries if '"__count"' in q["sql"]]
    assert response.context["cl"].result_count == len(MOMENTS)
    assert counts == []  # eight rows fit on the first page
    assert f"{len(MOMENTS)} sign-ups" in response.content.decode()


def test_a_day_before_the_first_sign_up_is_not_a_period(signups):
    later = admin_queryset().filter(signed_up_at__gte=MOMENTS[0] + timedelta(days=1))

    years = later.datetimes("signed_up_at", "year")

    assert [year.year for year in years] == [2024, 2025, 2026]
