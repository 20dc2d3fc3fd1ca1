"""
The links in the confirmation mail. Opening one (a GET, which mail scanners
do too) shows a page with one button and changes nothing; only its POST
confirms or erases. A link that expired, was cut short or was never made by
this site gets a page saying what to do, never a 500. The unsubscribe
address takes a mail client's one-click POST (RFC 8058): no cookie, no CSRF
token, and an answer that is not a redirect.
"""

import re
import time

import pytest
from django.core import signing
from django.test import Client

from accounts import mail
from accounts.models import OutgoingMail, Signup

pytestmark = pytest.mark.django_db

OLD_KEY = "an-earlier-secret-key-" + "o" * 40
ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture
def signup():
    """A sign-up waiting for confirmation, with its queued mail."""
    Signup.objects.register({"name": "Ada", "email": "ada@example.com"}, confirm=True)
    return Signup.objects.get()


@pytest.fixture
def browser():
    """A client that checks CSRF as the site does for a real browser."""
    return Client(enforce_csrf_checks=True)


def confirm_url(token):
    return f"/confirm/{token}/"


def unsubscribe_url(token):
    return f"/unsubscribe/{token}/"


def signed_days_ago(days, value, salt=mail.CONFIRM_SALT):
    """A confirmation token as signing.dumps() would have made it DAYS ago."""

    class LongAgo(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time() - days * 86400))

    return LongAgo(salt=salt).sign_object(value)


def buttons(response):
    return re.findall(r"<button[^>]*>", response.content.decode())


def post_with_csrf(browser, url):
    """Press the page's button: GET the page for its token, then POST."""
    page = browser.get(url)
    token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()
    )[1]
    return browser.post(url, {"csrfmiddlewaretoken": token})


def reloaded(signup):
    return Signup.objects.filter(pk=signup.pk).first()


# ----------------------------------------------------------------------------
# confirming


@pytest.mark.parametrize("method", ["get", "head"])
def test_opening_a_confirmation_link_shows_one_button_and_changes_nothing(
    browser, signup, method
):
    response = getattr(browser, method)(confirm_url(mail.confirm_token(signup.pk)))

    assert response.status_code == 200
    if method == "get":
        assert buttons(response) == ['<button type="submit">']
        html = response.content.decode()
        assert "<h1>Confirm your sign-up</h1>" in html
        assert '<form method="post"' in html
    assert reloaded(signup).status == Signup.Status.PENDING
    assert reloaded(signup).confirmed_at is None


def test_pressing_the_button_confirms(browser, signup):
    response = post_with_csrf(browser, confirm_url(mail.confirm_token(signup.pk)))

    assert response.status_code == 200
    assert "<h1>Your sign-up is confirmed</h1>" in response.content.decode()
    stored = reloaded(signup)
    assert stored.status == Signup.Status.CONFIRMED
    assert stored.confirmed_at is not None
    # The mail already sent or queued is left as it is.
    assert OutgoingMail.objects.filter(signup=signup).count() == 1


def test_confirming_twice_is_harmless_and_keeps_the_first_time(browser, signup):
    url = confirm_url(mail.confirm_token(signup.pk))
    post_with_csrf(browser, url)
    first = reloaded(signup).confirmed_at

    again = post_with_csrf(browser, url)

    assert again.status_code == 200
    assert "<h1>Your sign-up is confirmed</h1>" in again.content.decode()
    assert reloaded(signup).confirmed_at == first


def test_a_post_without_the_csrf_token_confirms_nothing(browser, signup):
    response = browser.post(confirm_url(mail.confirm_token(signup.pk)))

    assert response.status_code == 403
    assert reloaded(signup).status == Signup.Status.PENDING


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_expired_link_gets_a_page_saying_what_to_do(
    client, signup, method, settings
):
    token = signed_days_ago(settings.SIGNUP_CONFIRM_DAYS + 1, signup.pk)

    response = getattr(client, method)(confirm_url(token))

    assert response.status_code == 410
    html = response.content.decode()
    assert "<h1>This link has expired</h1>" in html
    assert "Confirmation links work for 7 days." in html
    assert '<a href="/">Go to the sign-up form</a>' in html
    assert reloaded(signup).status == Signup.Status.PENDING


def test_a_link_still_works_on_its_last_day(client, signup, settings):
    token = signed_days_ago(settings.SIGNUP_CONFIRM_DAYS - 0.01, signup.pk)

    response = client.post(confirm_url(token))

    assert response.status_code == 200
    assert reloaded(signup).status == Signup.Status.CONFIRMED


def test_the_validity_follows_the_setting(client, signup, settings):
    settings.SIGNUP_CONFIRM_DAYS = 2
    token = signed_days_ago(3, signup.pk)

    response = client.post(confirm_url(token))

    assert response.status_code == 410
    assert "Confirmation links work for 2 days." in response.content.decode()


def forged_tokens(signup_id):
    good = mail.confirm_token(signup_id)
    other_key = signing.dumps(signup_id, key="x" * 50, salt=mail.CONFIRM_SALT)
    return {
        "garbage": "not-a-token",
        "cut short": good[:-5],
        "one character changed": good[:-1] + ("A" if good[-1] != "A" else "B"),
        "another site's key": other_key,
        "an unsubscribe token": mail.unsubscribe_token(signup_id),
        "a signed string": signing.dumps("1", salt=mail.CONFIRM_SALT),
        "a signed boolean": signing.dumps(True, salt=mail.CONFIRM_SALT),
        "a signed list": signing.dumps([signup_id], salt=mail.CONFIRM_SALT),
        "very long": "A" * 5000,
        "dots and colons": "..:..:..",
    }


@pytest.mark.parametrize(
    "kind", list(forged_tokens(1)), ids=lambda kind: kind.replace(" ", "-")
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_forged_confirmation_link_gets_400_and_a_page(client, signup, kind, method):
    token = forged_tokens(signup.pk)[kind]

    response = getattr(client, method)(confirm_url(token))

    assert response.status_code == 400
    assert "<h1>This link is not valid</h1>" in response.content.decode()
    assert reloaded(signup).status == Signup.Status.PENDING


def test_confirming_a_sign_up_that_is_gone_says_so(client, signup):
    token = mail.confirm_token(signup.pk)
    signup.delete()

    response = client.post(confirm_url(token))

    assert response.status_code == 410
    assert "<h1>This address is no longer on the list</h1>" in response.content.decode()
    assert not Signup.objects.exists()


@pytest.mark.parametrize("method", ["put", "delete", "patch", "options"])
def test_other_methods_are_not_allowed(client, signup, method):
    token = mail.confirm_token(signup.pk)

    for url in (confirm_url(token), unsubscribe_url(mail.unsubscribe_token(1))):
        assert getattr(client, method)(url).status_code == 405
    assert reloaded(signup).status == Signup.Status.PENDING


# ----------------------------------------------------------------------------
# unsubscribing


@pytest.mark.parametrize("method", ["get", "head"])
def test_opening_an_unsubscribe_link_shows_one_button_and_keeps_the_sign_up(
    browser, signup, method
):
    response = getattr(browser, method)(
        unsubscribe_url(mail.unsubscribe_token(signup.pk))
    )

    assert response.status_code == 200
    if method == "get":
        assert buttons(response) == ['<button type="submit">']
        assert "<h1>Leave the list</h1>" in response.content.decode()
    assert reloaded(signup) is not None


def test_the_one_click_post_needs_no_cookie_or_csrf_and_is_not_a_redirect(
    browser, signup
):
    # What a mail client sends (RFC 8058): the body only, nothing else.
    response = browser.post(
        unsubscribe_url(mail.unsubscribe_token(signup.pk)),
        ONE_CLICK,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    assert "Location" not in response
    assert "<h1>You have left the list</h1>" in response.content.decode()
    assert not response.cookies
    assert reloaded(signup) is None
    assert not OutgoingMail.objects.exists()


def test_the_one_click_post_may_come_as_multipart(browser, signup):
    response = browser.post(
        unsubscribe_url(mail.unsubscribe_token(signup.pk)),
        {"List-Unsubscribe": "One-Click"},
    )

    assert response.status_code == 200
    assert reloaded(signup) is None


def test_the_pages_button_unsubscribes(browser, signup):
    url = unsubscribe_url(mail.unsubscribe_token(signup.pk))
    page = browser.get(url).content.decode()
    # The button's form sends what a mail client does, and no CSRF token.
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page
    assert "csrfmiddlewaretoken" not in page

    response = browser.post(url, {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert reloaded(signup) is None


def test_unsubscribing_twice_gets_the_same_page(browser, signup):
    url = unsubscribe_url(mail.unsubscribe_token(signup.pk))
    first = browser.post(
        url, ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )

    second = browser.post(
        url, ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )

    assert (second.status_code, second.content) == (first.status_code, first.content)


def test_unsubscribing_erases_only_that_sign_up(browser, signup):
    Signup.objects.register(
        {"name": "Grace", "email": "grace@example.com"}, confirm=True
    )
    grace = Signup.objects.get(email="grace@example.com")

    browser.post(
        unsubscribe_url(mail.unsubscribe_token(signup.pk)),
        ONE_CLICK,
        content_type="application/x-www-form-urlencoded",
    )

    assert list(Signup.objects.values_list("email", flat=True)) == [grace.email]
    assert list(OutgoingMail.objects.values_list("signup", flat=True)) == [grace.pk]


def test_an_unsubscribe_link_carries_no_time_and_so_never_expires(
    browser, signup, settings
):
    # The confirmation link's limit does not apply: a person may leave years
    # after joining. Signed without a timestamp, the token is value:signature.
    token = mail.unsubscribe_token(signup.pk)
    settings.SIGNUP_CONFIRM_DAYS = 1

    response = browser.post(
        unsubscribe_url(token),
        ONE_CLICK,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    assert token.count(":") == 1
    assert reloaded(signup) is None


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_forged_unsubscribe_link_gets_400_and_erases_nothing(browser, signup, method):
    good = mail.unsubscribe_token(signup.pk)
    for token in (
        "not-a-token",
        good[:-3],
        mail.confirm_token(signup.pk),
        signing.Signer(key="y" * 50, salt=mail.UNSUBSCRIBE_SALT).sign_object(signup.pk),
        signing.Signer(salt=mail.UNSUBSCRIBE_SALT).sign_object("ada@example.com"),
    ):
        response = getattr(browser, method)(unsubscribe_url(token))

        assert response.status_code == 400, token
        assert "<h1>This link is not valid</h1>" in response.content.decode()
    assert reloaded(signup) is not None


# ----------------------------------------------------------------------------
# a rotated secret key


def test_links_signed_with_an_earlier_key_still_work(browser, signup, settings):
    settings.SECRET_KEY = OLD_KEY
    confirm_token = mail.confirm_token(signup.pk)
    unsubscribe_token = mail.unsubscribe_token(signup.pk)
    settings.SECRET_KEY = "the-new-secret-key-" + "n" * 40
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]

    confirmed = post_with_csrf(browser, confirm_url(confirm_token))
    assert confirmed.status_code == 200
    assert reloaded(signup).status == Signup.Status.CONFIRMED
    left = browser.post(
        unsubscribe_url(unsubscribe_token),
        ONE_CLICK,
        content_type="application/x-www-form-urlencoded",
    )
    assert left.status_code == 200
    assert reloaded(signup) is None


def test_links_signed_with_a_key_no_longer_listed_are_not_valid(
    client, signup, settings
):
    settings.SECRET_KEY = OLD_KEY
    confirm_token = mail.confirm_token(signup.pk)
    unsubscribe_token = mail.unsubscribe_token(signup.pk)
    settings.SECRET_KEY = "the-new-secret-key-" + "n" * 40
    settings.SECRET_KEY_FALLBACKS = []

    assert client.post(confirm_url(confirm_token)).status_code == 400
    assert client.post(unsubscribe_url(unsubscribe_token)).status_code == 400
    assert reloaded(signup).status == Signup.Status.PENDING


def test_an_expired_link_signed_with_an_earlier_key_is_still_expired(
    client, signup, settings
):
    settings.SECRET_KEY = OLD_KEY
    token = signed_days_ago(30, signup.pk)
    settings.SECRET_KEY = "the-new-secret-key-" + "n" * 40
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]

    assert client.post(confirm_url(token)).status_code == 410


def test_the_link_pages_carry_no_script_and_load_nothing_from_elsewhere(client, signup):
    pages = [
        client.get(confirm_url(mail.confirm_token(signup.pk))),
        client.get(confirm_url("forged")),
        client.get(unsubscribe_url(mail.unsubscribe_token(signup.pk))),
    ]

    for page in pages:
        html = page.content.decode()
        assert "<script" not in html
        assert "http://" not in html
        assert "https://" not in html


def test_confirmation_tokens_expire_after_the_configured_days():
    # The token itself: what mail.confirmed_signup_id accepts and refuses.
    assert mail.confirmed_signup_id(mail.confirm_token(42)) == 42
    with pytest.raises(mail.ExpiredLink):
        mail.confirmed_signup_id(signed_days_ago(8, 42))
    with pytest.raises(mail.BadLink):
        mail.confirmed_signup_id(signed_days_ago(1, 42, salt="another salt"))
