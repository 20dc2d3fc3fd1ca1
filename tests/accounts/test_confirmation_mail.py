"""
A sign-up with double opt-in on queues its confirmation mail in the same
statement, within limits counted in PostgreSQL: one mail for a new address,
another for an address still waiting only after a few minutes and only a
handful a day, none for an address that is confirmed or was never asked. The
visitor sees the same page whatever the address was. The mail, as the mailer
sends it, carries the links and nothing the visitor typed but the address.
"""

import email
import email.policy
import re
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts import mail
from accounts.models import MAIL_INTERVAL, MAILS_PER_DAY, OutgoingMail, Signup
from accounts.outbox import Mailer
from tests.support.forms import signed

pytestmark = pytest.mark.django_db

SPAM_NAME = "Cheap pills at pills.example, click now"


def sign_up(address, name="Ada"):
    Signup.objects.register({"name": name, "email": address}, confirm=True)


def mails_to(address):
    return OutgoingMail.objects.filter(signup__email__iexact=address).count()


def as_if_mailed_ago(address, delay):
    """Move the last confirmation mail to ADDRESS back by DELAY."""
    Signup.objects.filter(email__iexact=address).update(
        last_mailed_at=timezone.now() - delay
    )


def mails_queued_ago(address, delay):
    OutgoingMail.objects.filter(signup__email__iexact=address).update(
        created_at=timezone.now() - delay
    )


# ----------------------------------------------------------------------------
# what register() queues


def test_a_new_address_is_stored_waiting_with_one_queued_mail():
    sign_up("ada@example.com")

    signup = Signup.objects.get()
    assert signup.status == Signup.Status.PENDING
    assert signup.last_mailed_at is not None
    assert signup.confirmed_at is None
    queued = OutgoingMail.objects.get()
    assert (queued.signup_id, queued.kind, queued.status, queued.attempts) == (
        signup.pk,
        OutgoingMail.Kind.CONFIRM,
        OutgoingMail.Status.QUEUED,
        0,
    )


@pytest.mark.parametrize(
    "again", ["ada@example.com", "ADA@example.com", "Ada@Example.Com"]
)
def test_the_same_address_within_minutes_gets_no_second_mail(again):
    sign_up("ada@example.com")

    sign_up(again, name="Someone Else")

    assert mails_to("ada@example.com") == 1
    assert Signup.objects.get().name == "Ada"


def test_just_before_the_interval_there_is_still_no_second_mail():
    sign_up("ada@example.com")
    as_if_mailed_ago("ada@example.com", MAIL_INTERVAL - timedelta(seconds=10))

    sign_up("ada@example.com")

    assert mails_to("ada@example.com") == 1


def test_after_the_interval_a_waiting_address_gets_one_more():
    sign_up("ada@example.com")
    before = Signup.objects.get().last_mailed_at
    as_if_mailed_ago("ada@example.com", MAIL_INTERVAL + timedelta(seconds=10))

    sign_up("ada@example.com")

    assert mails_to("ada@example.com") == 2
    assert Signup.objects.get().last_mailed_at >= before
    # And the interval starts again from this one.
    sign_up("ada@example.com")
    assert mails_to("ada@example.com") == 2


def test_at_most_a_handful_a_day_then_again_the_next_day():
    sign_up("ada@example.com")
    for _ in range(MAILS_PER_DAY + 2):
        as_if_mailed_ago("ada@example.com", MAIL_INTERVAL + timedelta(seconds=10))
        sign_up("ada@example.com")

    assert MAILS_PER_DAY == 5
    assert mails_to("ada@example.com") == MAILS_PER_DAY

    mails_queued_ago("ada@example.com", timedelta(hours=25))
    as_if_mailed_ago("ada@example.com", MAIL_INTERVAL + timedelta(seconds=10))
    sign_up("ada@example.com")

    assert mails_to("ada@example.com") == MAILS_PER_DAY + 1


def test_the_limits_are_per_address():
    sign_up("ada@example.com")
    sign_up("grace@example.com")
    sign_up("ada@example.com")

    assert (mails_to("ada@example.com"), mails_to("grace@example.com")) == (1, 1)


@pytest.mark.parametrize("status", [Signup.Status.CONFIRMED, Signup.Status.UNCONFIRMED])
def test_a_confirmed_or_never_asked_address_gets_no_mail(status):
    Signup.objects.create(
        name="Ada",
        email="ada@example.com",
        status=status,
        last_mailed_at=timezone.now() - timedelta(days=3),
    )

    sign_up("ADA@example.com")

    assert not OutgoingMail.objects.exists()
    assert Signup.objects.get().status == status


def test_without_double_opt_in_no_mail_is_queued():
    Signup.objects.register({"name": "Ada", "email": "ada@example.com"})

    assert Signup.objects.get().status == Signup.Status.UNCONFIRMED
    assert not OutgoingMail.objects.exists()


def register_at_once(count, address):
    """COUNT sign-ups of ADDRESS, each from its own thread and connection,
    sent together."""
    barrier = threading.Barrier(count)
    errors = []

    def worker():
        try:
            connection.ensure_connection()
            barrier.wait(timeout=10)
            sign_up(address)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_many_sign_ups_of_a_new_address_at_once_queue_one_mail():
    register_at_once(8, "ada@example.com")

    assert Signup.objects.count() == 1
    assert mails_to("ada@example.com") == 1


@pytest.mark.django_db(transaction=True)
def test_many_sign_ups_of_a_waiting_address_at_once_queue_one_more_mail():
    # Counted under the sign-up's row lock, not per process: two web
    # workers cannot both pass the limit.
    sign_up("ada@example.com")
    as_if_mailed_ago("ada@example.com", MAIL_INTERVAL + timedelta(seconds=10))

    register_at_once(8, "ada@example.com")

    assert mails_to("ada@example.com") == 2


# ----------------------------------------------------------------------------
# what the visitor sees


@pytest.fixture
def double_opt_in(settings):
    settings.SIGNUP_DOUBLE_OPT_IN = True
    settings.EMAIL_CONFIGURED = True


def post_form(address, name="Ada"):
    # A fresh visitor each time: no cookie tells the answers apart.
    return Client().post("/", signed({"name": name, "email": address}))


def test_the_answer_is_the_same_for_new_waiting_and_confirmed_addresses(
    double_opt_in,
):
    Signup.objects.create(
        name="Grace",
        email="grace@example.com",
        status=Signup.Status.CONFIRMED,
        confirmed_at=timezone.now(),
    )

    new = post_form("ada@example.com")
    waiting = post_form("ada@example.com", name="Someone Else")
    confirmed = post_form("GRACE@example.com")

    answers = [
        (r.status_code, r["Location"], r.content, sorted(r.headers))
        for r in (new, waiting, confirmed)
    ]
    assert answers[0] == answers[1] == answers[2]
    assert new.status_code == 302
    assert mails_to("ada@example.com") == 1
    assert mails_to("grace@example.com") == 0


def test_the_thanks_page_asks_to_check_the_inbox(client, double_opt_in):
    html = client.get("/thanks/").content.decode()

    assert "<h1>Please check your inbox</h1>" in html
    # It does not say whether the address was new.
    assert "If this address is new to the list" in html


def test_without_double_opt_in_the_thanks_page_is_as_before(client):
    html = client.get("/thanks/").content.decode()

    assert "<h1>Thank you for signing up!</h1>" in html
    assert "inbox" not in html


# ----------------------------------------------------------------------------
# the mail as the mailer sends it


@pytest.fixture
def sent(settings, mailoutbox):
    """Sign up SPAM_NAME and send the queue through Django's in-memory mail
    backend; return the parsed mail as a mail client reads it."""
    settings.DEFAULT_FROM_EMAIL = "Sign-ups <signup@example.com>"
    settings.SIGNUP_PUBLIC_URL = "https://signup.example.com"
    sign_up("ada@example.com", name=SPAM_NAME)
    # Due now in the database's clock, which inside a test's transaction
    # stays at the moment the test began.
    OutgoingMail.objects.update(due_at=timezone.now() - timedelta(minutes=1))

    Mailer().run(once=True)

    assert len(mailoutbox) == 1
    raw = mailoutbox[0].message().as_bytes()
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def test_the_mailer_marks_the_mail_sent(sent):
    queued = OutgoingMail.objects.get()

    assert queued.status == OutgoingMail.Status.SENT
    assert queued.attempts == 1
    assert queued.sent_at is not None


def test_the_mail_carries_no_name(sent):
    raw, message = sent

    for fragment in (SPAM_NAME, "pills", "Cheap"):
        assert fragment.encode() not in raw
        assert fragment not in message.get_content()
        assert all(fragment not in str(value) for value in message.values())


def test_the_mail_goes_to_the_address_from_the_sender(sent):
    _raw, message = sent

    assert message["To"] == "ada@example.com"
    assert message["From"] == "Sign-ups <signup@example.com>"
    assert message["Subject"] == "Please confirm your sign-up at signup.example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<\d+\.[\w-]{16}@example\.com>", message["Message-ID"])


def test_the_mail_links_confirm_and_unsubscribe_the_right_sign_up(sent):
    _raw, message = sent
    signup = Signup.objects.get()

    body = message.get_content()
    links = re.findall(r"https://\S+", body)
    confirm, unsubscribe = links
    assert urlsplit(confirm).netloc == "signup.example.com"
    token = re.fullmatch(r"/confirm/([^/]+)/", urlsplit(confirm).path)[1]
    assert mail.confirmed_signup_id(token) == signup.pk
    token = re.fullmatch(r"/unsubscribe/([^/]+)/", urlsplit(unsubscribe).path)[1]
    assert mail.unsubscribing_signup_id(token) == signup.pk
    assert "The link works for 7 days." in body


def test_the_mail_offers_one_click_unsubscribe(sent):
    _raw, message = sent

    body = message.get_content()
    unsubscribe = re.findall(r"https://\S+/unsubscribe/\S+", body)[0]
    # Folded onto a line of its own (the link is long): a client unfolds it
    # and drops the white space before the <...>.
    assert message["List-Unsubscribe"].strip() == f"<{unsubscribe}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_same_mail_composed_again_keeps_its_message_id(sent):
    _raw, message = sent
    queued = OutgoingMail.objects.select_related("signup").get()

    again = mail.confirmation_mail(queued.pk, queued.signup_id, "ada@example.com")

    assert again.extra_headers["Message-ID"] == message["Message-ID"]


def test_a_mail_asking_an_address_confirmed_meanwhile_is_dropped(mailoutbox):
    sign_up("ada@example.com")
    OutgoingMail.objects.update(due_at=timezone.now() - timedelta(minutes=1))
    Signup.objects.confirm(Signup.objects.get().pk)

    Mailer().run(once=True)

    assert mailoutbox == []
    assert not OutgoingMail.objects.exists()
