import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.export import neutralise
from accounts.models import Signup

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/signup/"


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser(
        "owner", "owner@example.com", "a long admin passphrase"
    )
    client.force_login(user)
    return client


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
    assert rows[0] == ["name", "email", "signed_up_at"]
    assert [row[:2] for row in rows[1:]] == [
        ["Ada", "ada@example.com"],
        ["Grace", "grace@example.com"],
    ]
    ada.refresh_from_db()
    assert rows[1][2] == ada.signed_up_at.isoformat()


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
