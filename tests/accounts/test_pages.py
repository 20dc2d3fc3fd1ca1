import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts import views
from accounts.forms import SignupForm
from accounts.models import Signup
from tests.support.forms import signed

pytestmark = pytest.mark.django_db

SIGNUP_URL = "/"
THANKS_URL = "/thanks/"


def test_form_page_has_heading_and_accessible_fields(client):
    response = client.get(SIGNUP_URL)

    assert response.status_code == 200
    html = response.content.decode()
    for fragment in (
        "<h1>Hello, please sign up!</h1>",
        '<label for="id_name">Name</label>',
        '<label for="id_email">Email address</label>',
        '<input type="text" name="name" autocomplete="name" maxlength="256"'
        ' required id="id_name">',
        '<input type="email" name="email" autocomplete="email" maxlength="254"'
        ' required id="id_email">',
        'name="csrfmiddlewaretoken"',
    ):
        assert fragment in html
    assert "<script" not in html


def test_pages_use_only_the_sites_own_stylesheet(client):
    html = client.get(SIGNUP_URL).content.decode()

    assert '<link rel="stylesheet" href="/static/site/site.css">' in html
    assert "http://" not in html
    assert "https://" not in html


def test_valid_signup_is_stored_and_redirects_to_thanks(client):
    response = client.post(
        SIGNUP_URL, signed({"name": "Ada Lovelace", "email": "ada@example.com"})
    )

    assert response.status_code == 302
    assert response["Location"] == THANKS_URL
    signup = Signup.objects.get()
    assert (signup.name, signup.email) == ("Ada Lovelace", "ada@example.com")
    assert signup.signed_up_at is not None


def test_full_flow_ends_on_thank_you_page(client):
    response = client.post(
        SIGNUP_URL, signed({"name": "Grace", "email": "grace@example.com"}), follow=True
    )

    assert response.redirect_chain == [(THANKS_URL, 302)]
    assert response.status_code == 200
    assert "Thank you for signing up!" in response.content.decode()


def test_thanks_page_url_does_not_carry_the_address(client):
    response = client.post(
        SIGNUP_URL, signed({"name": "Grace", "email": "grace@example.com"})
    )

    assert "grace" not in response["Location"]
    assert reverse("accounts:thanks") == response["Location"]


def test_timestamp_is_set_by_the_database(client):
    client.post(SIGNUP_URL, signed({"name": "A", "email": "a@example.com"}))
    client.post(SIGNUP_URL, signed({"name": "B", "email": "b@example.com"}))

    first, second = Signup.objects.order_by("id")
    assert first.signed_up_at <= second.signed_up_at


@pytest.mark.parametrize("method", ["put", "patch", "delete", "options"])
def test_other_methods_are_refused_with_405(client, method):
    response = getattr(client, method)(SIGNUP_URL)

    assert response.status_code == 405
    assert Signup.objects.count() == 0


def test_unknown_page_gets_the_sites_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_post_without_csrf_token_is_refused_with_a_clear_page(settings):
    response = Client(enforce_csrf_checks=True).post(
        SIGNUP_URL, signed({"name": "Eve", "email": "eve@example.com"})
    )

    assert response.status_code == 403
    assert "reload the page" in response.content.decode()
    assert Signup.objects.count() == 0


def form_fields_html(response):
    html = response.content.decode()
    return html[html.index("<form") : html.index("</form>")]


def without_token(html):
    return re.sub(r'name="(csrfmiddlewaretoken|signup_token)" value="[^"]+"', "", html)


def test_the_blank_form_served_from_memory_is_what_rendering_gives(client):
    views.blank_fields.cache_clear()
    first = client.get(SIGNUP_URL)
    assert views.blank_fields.cache_info().misses == 1

    from_memory = Client().get(SIGNUP_URL)
    assert views.blank_fields.cache_info().hits >= 1

    assert without_token(form_fields_html(from_memory)) == without_token(
        form_fields_html(first)
    )
    assert views.blank_fields() == views.render_fields(SignupForm())
    # Each visitor still gets a token of their own.
    assert first.cookies["csrftoken"].value != from_memory.cookies["csrftoken"].value


def test_what_one_visitor_typed_never_reaches_the_next_visitors_form(client):
    typed = client.post(
        SIGNUP_URL, signed({"name": "Mallory Typed", "email": "not-mail"})
    )
    assert 'value="Mallory Typed"' in typed.content.decode()

    html = Client().get(SIGNUP_URL).content.decode()

    assert "Mallory" not in html
    assert "not-mail" not in html
    assert "field--error" not in html
    assert "aria-invalid" not in html


def test_in_debug_mode_the_form_is_rendered_for_each_request(client, settings):
    settings.DEBUG = True
    views.blank_fields.cache_clear()

    client.get(SIGNUP_URL)
    client.get(SIGNUP_URL)

    assert views.blank_fields.cache_info().currsize == 0
