"""
Sessions, users and messages run for the admin only (signup_site.admin_only):
the public pages do no session work even for a logged-in owner, and the admin
still logs in, keeps its session and shows its messages.
"""

import pytest
from django.db import connection
from django.http import HttpResponse
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
    assert not hasattr(response.wsgi_request, "session")
    assert not hasattr(response.wsgi_request, "user")


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


@pytest.mark.parametrize("admin_url", ["admin/", "office/admin/"])
def test_the_admin_wherever_it_lives_has_sessions_users_and_messages(
    rf, settings, admin_url
):
    from signup_site.admin_only import (
        AdminAuthenticationMiddleware,
        AdminMessageMiddleware,
        AdminSessionMiddleware,
    )

    settings.ADMIN_URL = admin_url
    seen = {}

    def view(request):
        seen[request.path] = [
            hasattr(request, name) for name in ("session", "user", "_messages")
        ]
        return HttpResponse()

    stack = AdminSessionMiddleware(
        AdminAuthenticationMiddleware(AdminMessageMiddleware(view))
    )
    for path in (f"/{admin_url}", f"/{admin_url}login/", "/", "/thanks/"):
        stack(rf.get(path))

    assert seen == {
        f"/{admin_url}": [True, True, True],
        f"/{admin_url}login/": [True, True, True],
        "/": [False, False, False],
        "/thanks/": [False, False, False],
    }
