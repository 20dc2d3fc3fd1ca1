"""
Django's session, authentication and message middleware: the public pages
never load the session of a logged-in owner (nothing on them reads it), and
the admin logs in, keeps its session and shows its messages.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Signup
from tests.support.commands import OWNER_PASSWORD, OWNER_USERNAME
from tests.support.forms import signed

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/thanks/", "/no-such-page/"])
def test_public_pages_never_read_the_session_of_a_logged_in_owner(admin_client, path):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(path)

    assert response.status_code in (200, 404)
    assert [query["sql"] for query in queries] == []
    assert "sessionid" not in response.cookies
    assert not response.wsgi_request.session.accessed


def test_a_public_sign_up_by_a_logged_in_owner_is_stored(admin_client):
    response = admin_client.post(
        "/", signed({"name": "Ada", "email": "ada@example.com"})
    )

    assert response.status_code == 302
    assert Signup.objects.filter(email="ada@example.com").exists()


def test_the_admin_logs_in_keeps_its_session_and_shows_messages(client, owner):
    login = client.post(
        "/admin/login/?next=/admin/",
        {"username": OWNER_USERNAME, "password": OWNER_PASSWORD},
    )
    assert login.status_code == 302
    assert "sessionid" in login.cookies

    index = client.get("/admin/")
    assert index.status_code == 200
    assert index.wsgi_request.user == owner

    added = client.post(
        "/admin/accounts/signup/add/",
        {"name": "Grace", "email": "grace@example.com"},
        follow=True,
    )
    assert added.status_code == 200
    messages = [str(message) for message in added.context["messages"]]
    assert len(messages) == 1
    assert messages[0].endswith("was added successfully.")
    assert "was added successfully." in added.content.decode()


def test_the_admin_without_a_session_still_asks_for_a_login(client):
    response = client.get("/admin/accounts/signup/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_public_view_can_read_who_is_logged_in(admin_client, owner):
    response = admin_client.get("/")

    assert response.status_code == 200
    assert response.wsgi_request.user == owner
