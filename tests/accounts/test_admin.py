import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import admin as admin_module
from accounts.export import neutralise
from accounts.models import Signup
from tests.support.export import HEADER

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/signup/"


def make_signup(name, email, days_ago=0):
    signup = Signup.objects.create(name=name, email=email)
    if days_ago:
        Signup.objects.filter(pk=signup.pk).update(
            signed_up_at=timezone.now() - timedelta(days=days_ago)
        )
    return signup


def listed_emails(response):
    return [signup.email for signup in response.context["cl"].result_list]


def test_admin_requires_login(client):
    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_login_page_renders_for_anonymous_visitors(client):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert 'name="username"' in response.content.decode()


@pytest.mark.parametrize(
    ("visitor", "path"),
    [
        ("client", "/admin/login/"),
        ("admin_client", "/admin/"),
        ("admin_client", CHANGELIST),
    ],
)
def test_admin_pages_carry_the_site_icon(request, visitor, path):
    # Without one, browsers ask for /favicon.ico on every page and log a 404.
    response = request.getfixturevalue(visitor).get(path)

    assert response.status_code == 200
    assert '<link rel="icon" href="/static/site/favicon' in response.content.decode()


def test_list_shows_newest_first_with_name_email_and_time(admin_client):
    make_signup("Old", "old@example.com", days_ago=10)
    make_signup("New", "new@example.com")
    make_signup("Middle", "middle@example.com", days_ago=3)

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert listed_emails(response) == [
        "new@example.com",
        "middle@example.com",
        "old@example.com",
    ]
    html = response.content.decode()
    for column in ("column-name", "column-email", "column-signed_up_at"):
        assert column in html


def test_names_are_escaped_in_the_list(admin_client):
    make_signup("<img src=x onerror=alert(1)>", "x@example.com")

    html = admin_client.get(CHANGELIST).content.decode()

    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("lovelace", ["ada@example.com"]),
        ("GRACE@navy", ["grace@navy.example"]),
        ("hopper navy", ["grace@navy.example"]),
        ("example.org", ["alan@example.org"]),
        ("example", ["ada@example.com", "alan@example.org", "grace@navy.example"]),
        ("nobody", []),
    ],
)
def test_search_by_name_and_email(admin_client, query, expected):
    make_signup("Ada Lovelace", "ada@example.com", days_ago=2)
    make_signup("Grace Hopper", "grace@navy.example", days_ago=1)
    make_signup("Alan Turing", "alan@example.org")

    response = admin_client.get(CHANGELIST, {"q": query})

    assert sorted(listed_emails(response)) == sorted(expected)


def test_search_with_a_nul_byte_is_a_message_not_an_error(admin_client):
    response = admin_client.get(CHANGELIST, {"q": "a\x00b"})

    assert response.status_code == 200
    assert "Null characters are not allowed." in response.content.decode()


@pytest.mark.parametrize(
    "query",
    [
        "email=%00",
        "name=%00",
        "name__contains=x%00",
        "email__in=a@example.com,%00",
        "signed_up_at__gte=%00",
        "signed_up_at__year=2024%00",
        "name__regex=(",
        "email__iregex=[",
        "id__range=1",
    ],
)
def test_a_filter_the_database_would_refuse_is_an_invalid_lookup(admin_client, query):
    make_signup("Ada", "ada@example.com")

    response = admin_client.get(f"{CHANGELIST}?{query}")

    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST}?e=1"


def test_a_plain_filter_on_a_field_still_works(admin_client):
    make_signup("Ada", "ada@example.com")
    make_signup("Grace", "grace@example.com")

    response = admin_client.get(f"{CHANGELIST}?name__contains=rac")

    assert response.status_code == 200
    assert listed_emails(response) == ["grace@example.com"]


def test_filter_by_date(admin_client):
    make_signup("Old", "old@example.com", days_ago=30)
    make_signup("Today", "today@example.com")

    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    response = admin_client.get(CHANGELIST, {"signed_up_at__gte": str(midnight)})

    assert listed_emails(response) == ["today@example.com"]
    assert "By signed up at" in response.content.decode()


def test_timestamp_is_read_only_in_the_change_form(admin_client):
    signup = make_signup("Ada", "ada@example.com")

    response = admin_client.get(f"{CHANGELIST}{signup.pk}/change/")

    assert response.status_code == 200
    assert 'name="signed_up_at"' not in response.content.decode()
    assert "signed_up_at" in response.context["adminform"].readonly_fields


def read_csv(response):
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_csv_export_of_selected_rows(admin_client):
    ada = make_signup("Ada", "ada@example.com", days_ago=1)
    make_signup("Skip", "skip@example.com")
    grace = make_signup("Grace", "grace@example.com")

    response = admin_client.post(
        CHANGELIST,
        {"action": "export_csv", "_selected_action": [ada.pk, grace.pk]},
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="signups-')
    rows = read_csv(response)
    assert rows[0] == HEADER
    assert [row[:2] for row in rows[1:]] == [
        ["Ada", "ada@example.com"],
        ["Grace", "grace@example.com"],
    ]
    ada.refresh_from_db()
    assert rows[1][2] == ada.signed_up_at.isoformat()
    assert rows[1][3:] == ["unconfirmed", "", ""]


def test_csv_export_of_a_status_filter_carries_status_and_consent(admin_client):
    Signup.objects.create(name="Old", email="old@example.com")
    waiting = make_signup("Waiting", "waiting@example.com")
    confirmed = make_signup("Sure", "sure@example.com")
    Signup.objects.filter(pk=waiting.pk).update(status="pending", consent_version="v2")
    confirmed_at = timezone.now()
    Signup.objects.filter(pk=confirmed.pk).update(
        status="confirmed", confirmed_at=confirmed_at, consent_version="v1"
    )

    response = admin_client.post(
        f"{CHANGELIST}?status__exact=confirmed",
        {"action": "export_csv", "select_across": "1", "_selected_action": ["1"]},
    )

    rows = read_csv(response)
    assert [row[1:] for row in rows[1:]] == [
        [
            "sure@example.com",
            Signup.objects.get(pk=confirmed.pk).signed_up_at.isoformat(),
            "confirmed",
            confirmed_at.isoformat(),
            "v1",
        ]
    ]


def test_csv_export_of_everything_matching_a_search(admin_client):
    for i in range(30):
        make_signup(f"Match {i}", f"match{i}@example.com")
    make_signup("Other", "other@example.org")

    response = admin_client.post(
        f"{CHANGELIST}?q=example.com",
        {"action": "export_csv", "select_across": "1", "_selected_action": ["1"]},
    )

    rows = read_csv(response)
    assert len(rows) == 31
    assert all(row[1].endswith("@example.com") for row in rows[1:])


def test_csv_export_neutralises_formulas(admin_client):
    signup = make_signup('=HYPERLINK("http://evil")', "formula@example.com")
    make_signup("@SUM(A1)", "at@example.com")

    response = admin_client.post(
        CHANGELIST,
        {"action": "export_csv", "select_across": "1", "_selected_action": [signup.pk]},
    )

    names = [row[0] for row in read_csv(response)[1:]]
    assert names == ['\'=HYPERLINK("http://evil")', "'@SUM(A1)"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Ada", "Ada"),
        ("a=b", "a=b"),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected


@pytest.mark.parametrize(
    ("name", "email"),
    [
        ("Ada Lovelace", "ada@example.com"),
        ("<b>\"Bold\" & 'quoted'</b>", "o'brien+tag@example.com"),
        ("Zoë {{ 7*7 }} {}", "zoe@example.com"),
    ],
)
def test_the_row_checkbox_is_the_html_django_renders(name, email):
    from django.contrib.admin import ModelAdmin, site

    signup = Signup.objects.create(name=name, email=email)

    ours = site.get_model_admin(Signup).action_checkbox(signup)
    djangos = ModelAdmin.action_checkbox(site.get_model_admin(Signup), signup)

    assert ours == djangos
    assert "<b>" not in ours


def test_the_list_shows_a_checkbox_for_each_row(admin_client):
    rows = [make_signup(f"Person {n}", f"person{n}@example.com") for n in range(3)]

    html = admin_client.get(CHANGELIST).content.decode()

    for signup in rows:
        assert (
            f'<input type="checkbox" name="_selected_action" value="{signup.pk}"'
            ' class="action-select"'
        ) in html
    assert '<input type="checkbox" id="action-toggle"' in html


def bulk_signups(count, prefix="bulk"):
    Signup.objects.bulk_create(
        Signup(name=f"Person {n}", email=f"{prefix}{n}@example.com")
        for n in range(count)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE accounts_signup")


def count_queries(queries):
    """The paginator's COUNT of the matches (the chart counts per day)."""
    return [q["sql"] for q in queries if '"__count"' in q["sql"]]


@pytest.fixture
def estimate_from_200(monkeypatch):
    monkeypatch.setattr(admin_module, "ESTIMATE_FROM", 200)


def test_a_large_unfiltered_list_is_estimated_not_counted(
    admin_client, estimate_from_200
):
    bulk_signups(450)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert count_queries(queries) == []
    paginator = response.context["cl"].paginator
    assert paginator.count_is_estimate
    assert 350 <= paginator.count <= 550
    html = response.content.decode()
    assert f"about {paginator.count:,} sign-ups" in html
    assert "?p=2" in html  # the later pages are still there
    # Everywhere the number shows, it says it is an estimate.
    assert f"Select all about {paginator.count:,} sign-ups" in html
    assert f"All about {paginator.count:,} selected" in html
    assert "results (" not in html  # no "N results (Show all)" by the search box


def test_every_page_after_the_first_is_counted_exactly(admin_client, estimate_from_200):
    bulk_signups(450)
    Signup.objects.bulk_create(
        Signup(name=f"Person {n}", email=f"after{n}@example.com") for n in range(150)
    )

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST + "?p=6")

    cl = response.context["cl"]
    assert len(count_queries(queries)) == 1
    assert not cl.paginator.count_is_estimate
    assert cl.result_count == 600
    # The last page holds the last rows, whatever the estimate said.
    assert cl.paginator.num_pages == 6
    assert len(cl.result_list) == 100
    assert "600 sign-ups" in response.content.decode()


def test_the_estimate_follows_the_table_as_it_grows(admin_client, estimate_from_200):
    bulk_signups(450)
    before = admin_client.get(CHANGELIST).context["cl"].result_count
    # No ANALYZE after these: the estimate scales with the table's size.
    Signup.objects.bulk_create(
        Signup(name=f"Person {n}", email=f"later{n}@example.com") for n in range(450)
    )

    after = admin_client.get(CHANGELIST).context["cl"]

    assert after.paginator.count_is_estimate
    # By how much depends on the dead rows earlier tests left in the table.
    assert after.result_count > before


@pytest.mark.parametrize(
    "query",
    ["?q=Person", "?signed_up_at__gte=2000-01-01+00:00:00%2B00:00", "?p=2&q=example"],
)
def test_a_search_or_filter_is_counted_exactly(admin_client, estimate_from_200, query):
    bulk_signups(450)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST + query)

    assert response.status_code == 200
    assert len(count_queries(queries)) == 1
    assert response.context["cl"].result_count == 450
    assert not response.context["cl"].paginator.count_is_estimate
    assert "about" not in response.content.decode().split('class="paginator"')[1]


def test_a_table_below_the_threshold_is_counted_exactly(admin_client):
    bulk_signups(250)

    response = admin_client.get(CHANGELIST)

    assert response.context["cl"].result_count == 250
    assert "250 sign-ups" in response.content.decode()


def test_the_chart_is_on_the_list_and_not_on_a_search(admin_client):
    make_signup("Ada", "ada@example.com")

    listed = admin_client.get(CHANGELIST).content.decode()
    with CaptureQueriesContext(connection) as queries:
        searched = admin_client.get(CHANGELIST + "?q=ada").content.decode()

    assert 'id="signup-chart"' in listed
    assert 'id="signup-chart"' not in searched
    assert "ada@example.com" in searched
    assert not [q for q in queries if "GROUP BY" in q["sql"]]
