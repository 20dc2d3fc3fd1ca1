"""
What the owner sees of mail and consent in the admin: each sign-up's status,
confirmation time and consent wording; the queue of outgoing mail, with a way
to queue failed mail again; the wordings on record; a line saying that no
mail is sent, or how many sign-ups wait for confirmation. Deleting a sign-up
takes its mail with it.
"""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import consent
from accounts.models import ConsentWording, OutgoingMail, Signup

pytestmark = pytest.mark.django_db

SIGNUPS = "/admin/accounts/signup/"
MAILS = "/admin/accounts/outgoingmail/"
WORDINGS = "/admin/accounts/consentwording/"
NO_MAIL = "No mail is configured: nothing is sent; see docs/mail.md"


def pending(email, name="Someone"):
    """A sign-up waiting for confirmation, with its queued mail, stored as
    the form stores it."""
    Signup.objects.register({"name": name, "email": email}, confirm=True)
    return Signup.objects.get(email=email)


def make(email, status, **fields):
    return Signup.objects.create(name="Someone", email=email, status=status, **fields)


def listed(response):
    return [signup.email for signup in response.context["cl"].result_list]


@pytest.fixture
def three_statuses():
    make("old@example.com", Signup.Status.UNCONFIRMED)
    pending("waiting@example.com")
    make(
        "sure@example.com",
        Signup.Status.CONFIRMED,
        confirmed_at=timezone.now() - timedelta(hours=1),
    )


# ----------------------------------------------------------------------------
# the sign-up list and page


def test_the_list_shows_each_sign_ups_status_and_confirmation_time(
    admin_client, three_statuses
):
    html = admin_client.get(SIGNUPS).content.decode()

    for column in ("column-status", "column-confirmed_at"):
        assert column in html
    for label in ("not asked to confirm", "waiting for confirmation", "confirmed"):
        assert f'<td class="field-status">{label}</td>' in html


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("unconfirmed", ["old@example.com"]),
        ("pending", ["waiting@example.com"]),
        ("confirmed", ["sure@example.com"]),
    ],
)
def test_the_list_filters_by_status(admin_client, three_statuses, status, expected):
    response = admin_client.get(SIGNUPS, {"status__exact": status})

    assert response.status_code == 200
    assert listed(response) == expected
    # Filtered, so counted exactly, never estimated.
    assert not response.context["cl"].paginator.count_is_estimate
    html = response.content.decode()
    assert "By status" in html
    assert f"?status__exact={status}" in html


def test_an_unknown_status_lists_nothing_and_is_no_error(admin_client, three_statuses):
    response = admin_client.get(SIGNUPS, {"status__exact": "bogus"})

    assert response.status_code == 200
    assert listed(response) == []


def test_the_change_page_shows_status_confirmation_and_the_consent_wording(
    admin_client, settings
):
    settings.SIGNUP_CONSENT_TEXT = "I agree to <b>monthly</b> news."
    settings.SIGNUP_PRIVACY_URL = "https://example.com/privacy"
    settings.SIGNUP_CONSENT_CHECKBOX = True
    consent.wording.cache_clear()
    try:
        wording = consent.record()
    finally:
        consent.wording.cache_clear()
    confirmed_at = timezone.now().replace(microsecond=0)
    signup = make(
        "ada@example.com",
        Signup.Status.CONFIRMED,
        confirmed_at=confirmed_at,
        consent_version=wording.version,
    )

    response = admin_client.get(f"{SIGNUPS}{signup.pk}/change/")

    assert response.status_code == 200
    readonly = response.context["adminform"].readonly_fields
    assert {"status", "confirmed_at", "consent"} <= set(readonly)
    html = response.content.decode()
    # Shown, never an input the owner could change.
    for name in ("status", "confirmed_at", "consent_version", "last_mailed_at"):
        assert f'name="{name}"' not in html
    assert '<div class="readonly">confirmed</div>' in html
    assert f"{wording.version}: I agree to &lt;b&gt;monthly&lt;/b&gt; news." in html
    assert "https://example.com/privacy" in html
    assert "asked with an unticked checkbox" in html


@pytest.mark.parametrize(
    ("version", "shown"),
    [
        ("", "not recorded (signed up before consent was recorded)"),
        ("0123abcd4567", "0123abcd4567 (its wording is not on record)"),
    ],
)
def test_a_sign_up_without_a_wording_on_record_says_so(admin_client, version, shown):
    signup = make("ada@example.com", Signup.Status.UNCONFIRMED, consent_version=version)

    response = admin_client.get(f"{SIGNUPS}{signup.pk}/change/")

    assert response.status_code == 200
    assert shown in response.content.decode()


def test_editing_a_name_keeps_status_and_consent(admin_client):
    signup = pending("ada@example.com")
    Signup.objects.filter(pk=signup.pk).update(consent_version="v1")

    response = admin_client.post(
        f"{SIGNUPS}{signup.pk}/change/",
        {"name": "Ada Lovelace", "email": "ada@example.com", "status": "confirmed"},
    )

    assert response.status_code == 302
    signup.refresh_from_db()
    assert signup.name == "Ada Lovelace"
    assert (signup.status, signup.consent_version) == ("pending", "v1")
    assert signup.confirmed_at is None


# ----------------------------------------------------------------------------
# deleting a sign-up erases its mail


def test_deleting_a_sign_up_erases_it_with_its_queued_mail(admin_client):
    signup = pending("ada@example.com")
    other = pending("grace@example.com")
    assert OutgoingMail.objects.filter(signup=signup).count() == 1

    confirm_page = admin_client.get(f"{SIGNUPS}{signup.pk}/delete/")
    # The owner is not told they lack a permission to delete mail records.
    assert confirm_page.context["perms_lacking"] == set()
    mail = OutgoingMail.objects.get(signup=signup)
    assert f'Outgoing mail: <a href="{MAILS}{mail.pk}/change/">' in (
        confirm_page.content.decode()
    )
    response = admin_client.post(f"{SIGNUPS}{signup.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Signup.objects.filter(pk=signup.pk).exists()
    assert not OutgoingMail.objects.filter(signup_id=signup.pk).exists()
    assert list(OutgoingMail.objects.values_list("signup", flat=True)) == [other.pk]


def test_deleting_selected_sign_ups_erases_their_mail(admin_client):
    signups = [pending(f"person{n}@example.com") for n in range(3)]
    OutgoingMail.objects.filter(signup=signups[0]).update(
        status=OutgoingMail.Status.SENT, sent_at=timezone.now()
    )
    chosen = [signups[0].pk, signups[1].pk]

    response = admin_client.post(
        SIGNUPS,
        {"action": "delete_selected", "_selected_action": chosen, "post": "yes"},
    )

    assert response.status_code == 302
    assert list(Signup.objects.values_list("pk", flat=True)) == [signups[2].pk]
    assert list(OutgoingMail.objects.values_list("signup", flat=True)) == [
        signups[2].pk
    ]


# ----------------------------------------------------------------------------
# the line about mail above the sign-ups


def notices(response):
    html = response.content.decode()
    if 'class="messagelist mail-notices"' not in html:
        return None
    return html.split('class="messagelist mail-notices"')[1].split("</ul>")[0]


def test_without_mail_the_list_says_nothing_is_sent(admin_client, settings):
    settings.EMAIL_CONFIGURED = False
    settings.SIGNUP_DOUBLE_OPT_IN = False

    response = admin_client.get(SIGNUPS)

    assert response.status_code == 200
    assert notices(response) == f'>\n      <li class="warning">{NO_MAIL}</li>\n    '


def test_with_double_opt_in_the_list_says_how_many_are_waiting(
    admin_client, settings, three_statuses
):
    settings.EMAIL_CONFIGURED = True
    settings.SIGNUP_DOUBLE_OPT_IN = True
    pending("also-waiting@example.com")

    line = notices(admin_client.get(SIGNUPS))

    assert NO_MAIL not in line
    assert (
        f'<a href="{SIGNUPS}?status__exact=pending">Double opt-in is on: 2 sign-ups'
        " are waiting for confirmation.</a>"
    ) in line
    # The link lists exactly those.
    response = admin_client.get(f"{SIGNUPS}?status__exact=pending")
    assert sorted(listed(response)) == [
        "also-waiting@example.com",
        "waiting@example.com",
    ]


def test_one_waiting_sign_up_is_counted_in_the_singular(admin_client, settings):
    settings.EMAIL_CONFIGURED = True
    settings.SIGNUP_DOUBLE_OPT_IN = True
    pending("waiting@example.com")

    assert "1 sign-up is waiting" in notices(admin_client.get(SIGNUPS))


def test_with_mail_and_no_double_opt_in_there_is_no_line(admin_client, settings):
    settings.EMAIL_CONFIGURED = True
    settings.SIGNUP_DOUBLE_OPT_IN = False

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(SIGNUPS)

    assert notices(response) is None
    assert not [q for q in queries if "'pending'" in q["sql"]]


def test_the_waiting_count_reads_the_partial_index(settings):
    # The plan, not a time: with many other sign-ups the count must not read
    # the whole table on every page of the admin.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        query = Signup.objects.filter(status=Signup.Status.PENDING)
        plan = query.explain()

    assert "accounts_signup_pending" in plan


def test_an_action_does_not_count_the_waiting(admin_client, settings):
    settings.EMAIL_CONFIGURED = True
    settings.SIGNUP_DOUBLE_OPT_IN = True
    signup = pending("waiting@example.com")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.post(
            SIGNUPS, {"action": "export_csv", "_selected_action": [signup.pk]}
        )
        b"".join(response.streaming_content)

    assert not [q for q in queries if '"__count"' in q["sql"]]


# ----------------------------------------------------------------------------
# outgoing mail


@pytest.fixture
def mails():
    """One mail of each status, each for its own sign-up."""
    now = timezone.now()
    result = {}
    for status in OutgoingMail.Status.values:
        signup = pending(f"{status}@example.com")
        mail = OutgoingMail.objects.get(signup=signup)
        OutgoingMail.objects.filter(pk=mail.pk).update(
            status=status,
            attempts={"queued": 0, "sent": 1, "failed": 3}[status],
            due_at=now - timedelta(hours=2),
            sent_at=now if status == "sent" else None,
            last_error="550 5.1.1 mailbox unavailable" if status == "failed" else "",
        )
        result[status] = OutgoingMail.objects.get(pk=mail.pk)
    return result


def test_the_mail_list_shows_kind_status_attempts_times_error_and_sign_up(
    admin_client, mails
):
    response = admin_client.get(MAILS)

    assert response.status_code == 200
    html = response.content.decode()
    columns = "kind status attempts due_at sent_at last_error signup_link"
    for column in columns.split():
        assert f"column-{column}" in html
    failed = mails["failed"]
    assert "550 5.1.1 mailbox unavailable" in html
    assert (
        f'<a href="{SIGNUPS}{failed.signup_id}/change/">failed@example.com</a>' in html
    )
    assert '<td class="field-kind">confirmation request</td>' in html


def test_the_mail_list_costs_the_same_queries_for_many_rows(admin_client, mails):
    # The sign-up of each row is joined, not fetched row by row.
    with CaptureQueriesContext(connection) as few:
        admin_client.get(MAILS)
    for n in range(20):
        pending(f"more{n}@example.com")
    with CaptureQueriesContext(connection) as many:
        admin_client.get(MAILS)

    assert len(many) == len(few)


@pytest.mark.parametrize("status", ["queued", "sent", "failed"])
def test_the_mail_list_filters_by_status(admin_client, mails, status):
    response = admin_client.get(MAILS, {"status__exact": status})

    assert [mail.pk for mail in response.context["cl"].result_list] == [
        mails[status].pk
    ]


def test_mail_records_cannot_be_added_changed_or_deleted(admin_client, mails):
    failed = mails["failed"]

    assert admin_client.get(f"{MAILS}add/").status_code == 403
    page = admin_client.get(f"{MAILS}{failed.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="status"' not in html
    assert 'name="_save"' not in html
    assert admin_client.post(f"{MAILS}{failed.pk}/delete/").status_code == 403
    assert "delete_selected" not in admin_client.get(MAILS).content.decode()
    response = admin_client.post(
        f"{MAILS}{failed.pk}/change/", {"status": "queued", "attempts": "0"}
    )
    assert response.status_code == 403
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("failed", 3)


def test_failed_mail_is_queued_again_due_now(admin_client, mails):
    chosen = [mail.pk for mail in mails.values()]
    before = timezone.now()

    response = admin_client.post(
        MAILS, {"action": "queue_again", "_selected_action": chosen}, follow=True
    )

    assert response.status_code == 200
    messages = [str(message) for message in response.context["messages"]]
    assert messages == ["1 mail queued again. 2 had not failed and are unchanged."]
    failed = OutgoingMail.objects.get(pk=mails["failed"].pk)
    assert failed.status == "queued"
    # Due now, in the database's clock: the mailer picks it up next.
    assert before - timedelta(seconds=5) <= failed.due_at <= timezone.now()
    # What happened before stays visible until the mailer sends it.
    assert (failed.attempts, failed.last_error) == (
        3,
        "550 5.1.1 mailbox unavailable",
    )
    sent = OutgoingMail.objects.get(pk=mails["sent"].pk)
    assert (sent.status, sent.due_at) == ("sent", mails["sent"].due_at)
    queued = OutgoingMail.objects.get(pk=mails["queued"].pk)
    assert queued.due_at == mails["queued"].due_at


def test_a_viewer_without_change_permission_cannot_queue_mail_again(client, mails):
    viewer = get_user_model().objects.create_user(
        "viewer", "viewer@example.com", "a long viewer passphrase", is_staff=True
    )
    viewer.user_permissions.add(Permission.objects.get(codename="view_outgoingmail"))
    client.force_login(viewer)

    page = client.get(MAILS)
    response = client.post(
        MAILS, {"action": "queue_again", "_selected_action": [mails["failed"].pk]}
    )

    assert page.status_code == 200
    assert "queue_again" not in page.content.decode()
    assert response.status_code in (200, 302)
    assert OutgoingMail.objects.get(pk=mails["failed"].pk).status == "failed"


# ----------------------------------------------------------------------------
# consent wordings


def test_consent_wordings_are_listed_and_read_only(admin_client):
    wording = ConsentWording.objects.create(
        version="abc123def456",
        text="I agree to the newsletter.",
        privacy_url="/privacy/",
        checkbox=False,
    )

    listing = admin_client.get(WORDINGS)
    page = admin_client.get(f"{WORDINGS}{wording.pk}/change/")

    assert listing.status_code == 200
    assert "I agree to the newsletter." in listing.content.decode()
    assert "abc123def456" in listing.content.decode()
    assert page.status_code == 200
    assert 'name="text"' not in page.content.decode()
    assert admin_client.get(f"{WORDINGS}add/").status_code == 403
    assert admin_client.post(f"{WORDINGS}{wording.pk}/delete/").status_code == 403
    response = admin_client.post(
        f"{WORDINGS}{wording.pk}/change/", {"text": "Something else"}
    )
    assert response.status_code == 403
    wording.refresh_from_db()
    assert wording.text == "I agree to the newsletter."
