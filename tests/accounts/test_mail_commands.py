"""
`manage.py purge_signups` and `manage.py erase_signup`: in-process for what
they delete, and in child processes for their exit codes and messages.
"""

import socket
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.models import OutgoingMail, Signup
from accounts.outbox import KEEP_SENT
from tests.support.commands import TEST_SECRET_KEY, manage, site_environment
from tests.support.stack import connect, migrated_database


def make(email, status, days_ago, **fields):
    signup = Signup.objects.create(name="Someone", email=email, status=status, **fields)
    Signup.objects.filter(pk=signup.pk).update(
        signed_up_at=timezone.now() - timedelta(days=days_ago)
    )
    return signup


def mail_for(signup, status=OutgoingMail.Status.QUEUED, days_ago=0):
    mail = OutgoingMail.objects.create(signup=signup, kind="confirm", status=status)
    OutgoingMail.objects.filter(pk=mail.pk).update(
        created_at=timezone.now() - timedelta(days=days_ago)
    )
    return mail


def run(command, *args):
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def emails():
    return sorted(Signup.objects.values_list("email", flat=True))


# ----------------------------------------------------------------------------
# purge_signups


@pytest.mark.django_db
def test_purge_deletes_only_sign_ups_left_waiting_too_long(settings):
    settings.SIGNUP_PURGE_DAYS = 30
    stale = make("stale@example.com", Signup.Status.PENDING, days_ago=31)
    mail_for(stale)
    make("recent@example.com", Signup.Status.PENDING, days_ago=29)
    make("old-unasked@example.com", Signup.Status.UNCONFIRMED, days_ago=400)
    make(
        "old-confirmed@example.com",
        Signup.Status.CONFIRMED,
        days_ago=400,
        confirmed_at=timezone.now() - timedelta(days=399),
    )

    output = run("purge_signups")

    assert output == "Deleted 1 unconfirmed sign-up and 0 old mail records.\n"
    assert emails() == [
        "old-confirmed@example.com",
        "old-unasked@example.com",
        "recent@example.com",
    ]
    assert not OutgoingMail.objects.filter(signup_id=stale.pk).exists()


@pytest.mark.django_db
def test_purge_keeps_a_sign_up_mailed_again_while_its_new_link_works(settings):
    settings.SIGNUP_PURGE_DAYS = 30
    # Signed up 31 days ago, and again yesterday: yesterday's mail holds a
    # link that works for days and says the address is kept for 30.
    mailed_again = make(
        "again@example.com",
        Signup.Status.PENDING,
        days_ago=31,
        last_mailed_at=timezone.now() - timedelta(days=1),
    )
    make(
        "forgotten@example.com",
        Signup.Status.PENDING,
        days_ago=45,
        last_mailed_at=timezone.now() - timedelta(days=31),
    )

    run("purge_signups")

    assert emails() == [mailed_again.email]


@pytest.mark.django_db
def test_purge_follows_the_setting(settings):
    settings.SIGNUP_PURGE_DAYS = 10
    make("eleven@example.com", Signup.Status.PENDING, days_ago=11)
    make("nine@example.com", Signup.Status.PENDING, days_ago=9)

    run("purge_signups")

    assert emails() == ["nine@example.com"]


@pytest.mark.django_db
def test_purge_deletes_records_of_old_sent_and_failed_mail_not_queued_mail():
    kept = make("kept@example.com", Signup.Status.CONFIRMED, days_ago=100)
    old_sent = mail_for(kept, OutgoingMail.Status.SENT, KEEP_SENT.days + 1)
    old_failed = mail_for(kept, OutgoingMail.Status.FAILED, KEEP_SENT.days + 1)
    old_queued = mail_for(kept, OutgoingMail.Status.QUEUED, KEEP_SENT.days + 1)
    recent_sent = mail_for(kept, OutgoingMail.Status.SENT, KEEP_SENT.days - 1)

    output = run("purge_signups")

    assert output == "Deleted 0 unconfirmed sign-ups and 2 old mail records.\n"
    remaining = set(OutgoingMail.objects.values_list("pk", flat=True))
    assert remaining == {old_queued.pk, recent_sent.pk}
    assert not {old_sent.pk, old_failed.pk} & remaining
    assert emails() == ["kept@example.com"]


@pytest.mark.django_db
def test_purging_again_deletes_nothing_more(settings):
    make("stale@example.com", Signup.Status.PENDING, days_ago=60)
    run("purge_signups")

    assert run("purge_signups") == (
        "Deleted 0 unconfirmed sign-ups and 0 old mail records.\n"
    )


# ----------------------------------------------------------------------------
# erase_signup


@pytest.mark.django_db
@pytest.mark.parametrize(
    "typed", ["ada@example.com", "ADA@EXAMPLE.COM", "  Ada@Example.com  "]
)
def test_erase_deletes_the_address_in_any_case_with_its_mail(typed):
    ada = make("Ada@example.com", Signup.Status.PENDING, days_ago=1)
    mail_for(ada)
    mail_for(ada, OutgoingMail.Status.SENT)
    grace = make("grace@example.com", Signup.Status.PENDING, days_ago=1)
    mail_for(grace)

    output = run("erase_signup", typed)

    assert output == (f"Erased the sign-up of {typed.strip()} and its queued mail.\n")
    assert emails() == ["grace@example.com"]
    assert list(OutgoingMail.objects.values_list("signup", flat=True)) == [grace.pk]


@pytest.mark.django_db
def test_erasing_an_unknown_address_is_an_error_that_changes_nothing():
    make("ada@example.com", Signup.Status.CONFIRMED, days_ago=1)

    with pytest.raises(
        CommandError, match=r"^No sign-up has the address x@example\.com\.$"
    ):
        run("erase_signup", "x@example.com")
    assert emails() == ["ada@example.com"]


@pytest.mark.django_db
@pytest.mark.parametrize("typed", ["not an address", "%", "ada@", ""])
def test_erasing_something_that_is_not_an_address_is_refused(typed):
    make("ada@example.com", Signup.Status.CONFIRMED, days_ago=1)

    with pytest.raises(CommandError, match="is not an email address"):
        run("erase_signup", typed)
    assert emails() == ["ada@example.com"]


# ----------------------------------------------------------------------------
# as the owner runs them: child processes


@pytest.fixture
def site_database():
    """A migrated database on the shared server, and its site environment."""
    with migrated_database("signup_mailcmd") as (env, db):
        yield env, db


def rows(db, sql):
    with connect(db, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def test_the_commands_in_a_child_process(site_database):
    env, db = site_database
    with connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO accounts_signup (name, email, status, signed_up_at) VALUES"
            " ('Ada', 'ada@example.com', 'pending', now() - interval '40 days'),"
            " ('Grace', 'Grace@example.com', 'pending', now())"
        )
        conn.execute(
            "INSERT INTO accounts_outgoingmail (signup_id, kind)"
            " SELECT id, 'confirm' FROM accounts_signup"
        )

    purged = manage("purge_signups", env={**env, "SIGNUP_PURGE_DAYS": "30"})
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout == "Deleted 1 unconfirmed sign-up and 0 old mail records.\n"
    assert rows(db, "SELECT email FROM accounts_signup") == [("Grace@example.com",)]

    missing = manage("erase_signup", "ada@example.com", env=env)
    assert missing.returncode == 1
    assert (
        missing.stderr == "CommandError: No sign-up has the address ada@example.com.\n"
    )

    erased = manage("erase_signup", "grace@EXAMPLE.com", env=env)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout == (
        "Erased the sign-up of grace@EXAMPLE.com and its queued mail.\n"
    )
    assert rows(db, "SELECT count(*) FROM accounts_signup") == [(0,)]
    assert rows(db, "SELECT count(*) FROM accounts_outgoingmail") == [(0,)]


def test_purge_refuses_a_purge_shorter_than_the_confirmation(site_database):
    env, _db = site_database

    result = manage(
        "purge_signups",
        env={**env, "SIGNUP_PURGE_DAYS": "3", "SIGNUP_CONFIRM_DAYS": "7"},
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "SIGNUP_PURGE_DAYS=3 is shorter than SIGNUP_CONFIRM_DAYS=7" in (
        result.stderr
    )


def test_the_mailer_without_mail_says_so_and_once_returns(tmp_path):
    # --once is for cron and tests: it must end even with nothing to send to.
    result = manage(
        "deliver_mail",
        "--once",
        env=site_environment(
            DJANGO_SECRET_KEY=TEST_SECRET_KEY,
            MAILER_HEARTBEAT_FILE=tmp_path / "heartbeat",
        ),
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "No mail is configured (EMAIL_URL): nothing will be sent." in (result.stderr)


def test_the_mailer_once_fails_when_the_server_cannot_be_reached(
    site_database, tmp_path
):
    # A cron job's run must end with an error, not back off for hours.
    env, db = site_database
    with connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO accounts_signup (name, email, status)"
            " VALUES ('Ada', 'ada@example.com', 'pending')"
        )
        conn.execute(
            "INSERT INTO accounts_outgoingmail (signup_id, kind)"
            " SELECT id, 'confirm' FROM accounts_signup"
        )
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = manage(
        "deliver_mail",
        "--once",
        env={
            **env,
            "EMAIL_URL": f"smtp://127.0.0.1:{port}",
            "DEFAULT_FROM_EMAIL": "signup@example.com",
            "MAILER_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
        },
        timeout=60,
    )

    assert result.returncode == 1
    assert "CommandError: The mail server cannot be reached:" in result.stderr
    assert "Traceback" not in result.stderr
    assert rows(db, "SELECT status, attempts FROM accounts_outgoingmail") == [
        ("queued", 1)
    ]
