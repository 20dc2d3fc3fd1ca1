"""
`manage.py bootstrap` against real PostgreSQL servers: the machine's shared
one for an empty database, and throwaway clusters for password authentication
and for servers that start late or never.
"""

import re
import threading
import time
from io import StringIO

import psycopg
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accounts.management.commands.bootstrap import describe_failure
from loopback.processes import free_port
from tests.support.commands import (
    PROJECT_ROOT,
    TEST_SECRET_KEY,
    manage,
    site_environment,
    start_manage,
)
from tests.support.stack import shared_database

SPECIAL_PASSWORD = "p@ss:w/rd#?%+ é"


def cluster_environment(cluster, user, password, database, **extra):
    return site_environment(
        DJANGO_SECRET_KEY=TEST_SECRET_KEY,
        POSTGRES_HOST="127.0.0.1",
        POSTGRES_PORT=cluster.port,
        POSTGRES_USER=user,
        POSTGRES_PASSWORD=password,
        POSTGRES_DB=database,
        **extra,
    )


@pytest.fixture
def site_cluster(throwaway_cluster):
    """A running throwaway server with a role and database for the site."""
    cluster = throwaway_cluster()
    cluster.start()
    cluster.create_role_and_database("site", "site-password", "signup")
    return cluster


@pytest.fixture
def empty_shared_database():
    """A new, empty database on the machine's shared server (trust auth)."""
    from django.conf import settings

    with shared_database(settings.DATABASES["default"], "signup_bootstrap") as env:
        yield env


def test_first_run_migrates_and_second_run_changes_nothing(site_cluster):
    env = cluster_environment(site_cluster, "site", "site-password", "signup")

    first = manage("bootstrap", env=env)
    second = manage("bootstrap", env=env)

    assert first.returncode == 0, first.stderr
    assert "Applying accounts.0001_initial... OK" in first.stdout
    assert re.search(
        r"Database ready \(\d+ migrations applied; no admin account configured\)",
        first.stdout,
    )
    assert second.returncode == 0, second.stderr
    assert "Applying" not in second.stdout
    assert (
        "Database ready (schema already up to date; no admin account configured)"
        in second.stdout
    )
    on_disk = len(list((PROJECT_ROOT / "accounts" / "migrations").glob("0*.py")))
    assert site_cluster.psql(
        "SELECT count(*) FROM django_migrations WHERE app = 'accounts'", "signup"
    ) == str(on_disk)


def test_waits_for_a_database_that_appears_after_several_seconds(throwaway_cluster):
    cluster = throwaway_cluster(superuser_password="late-password")
    env = cluster_environment(cluster, "postgres", "late-password", "postgres")

    process = start_manage("bootstrap", "--timeout", "60", env=env)
    time.sleep(4)
    assert process.poll() is None, "bootstrap gave up before the server started"
    cluster.start()
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert "Waiting for PostgreSQL at 127.0.0.1:" in stderr
    assert "unreachable (connection refused)" in stderr
    assert "Database ready (" in stdout
    assert cluster.psql("SELECT count(*) > 0 FROM django_migrations") == "t"


def test_gives_up_within_the_timeout_when_the_database_never_appears():
    port = free_port()
    env = site_environment(
        DJANGO_SECRET_KEY=TEST_SECRET_KEY,
        POSTGRES_HOST="127.0.0.1",
        POSTGRES_PORT=port,
        POSTGRES_PASSWORD="x",
        POSTGRES_DB="signup",
    )

    started = time.monotonic()
    result = manage("bootstrap", "--timeout", "3", env=env)
    elapsed = time.monotonic() - started

    assert result.returncode == 1
    assert elapsed < 3 + 5, elapsed  # the timeout plus interpreter start-up
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (
        f'CommandError: Cannot use PostgreSQL at 127.0.0.1:{port}, database "signup": '
        "timed out after 3 s; last attempt: unreachable (connection refused)."
    )
    assert "Traceback" not in result.stderr


def test_wrong_password_fails_at_once_with_the_cause(site_cluster):
    env = cluster_environment(site_cluster, "site", "wrong-password", "signup")

    started = time.monotonic()
    result = manage("bootstrap", "--timeout", "60", env=env)

    assert result.returncode == 1
    assert time.monotonic() - started < 10, "an authentication failure is not retried"
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        f"CommandError: Cannot use PostgreSQL at 127.0.0.1:{site_cluster.port}, "
        'database "signup": authentication failed; '
        "check POSTGRES_USER and POSTGRES_PASSWORD."
    )
    assert "remove the old data volume" in last_line
    assert "wrong-password" not in result.stderr


def test_missing_database_fails_at_once_with_the_cause(site_cluster):
    env = cluster_environment(site_cluster, "site", "site-password", "nosuchdb")

    result = manage("bootstrap", "--timeout", "60", env=env)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"CommandError: Cannot use PostgreSQL at 127.0.0.1:{site_cluster.port}, "
        'database "nosuchdb": database missing; create the database or fix POSTGRES_DB.'
    )


def test_five_bootstraps_at_once_on_an_empty_database_apply_each_migration_once(
    empty_shared_database,
):
    env = site_environment(DJANGO_SECRET_KEY=TEST_SECRET_KEY, **empty_shared_database)

    processes = [start_manage("bootstrap", "--no-input", env=env) for _ in range(5)]
    outputs = [process.communicate(timeout=120) for process in processes]

    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    applied = [
        line
        for stdout, _ in outputs
        for line in stdout.splitlines()
        if line.strip().startswith("Applying ")
    ]
    assert len(applied) == len(set(applied)), "a migration was applied twice"
    assert "  Applying accounts.0001_initial... OK" in applied
    with psycopg.connect(
        host=empty_shared_database["POSTGRES_HOST"],
        port=empty_shared_database["POSTGRES_PORT"],
        user=empty_shared_database["POSTGRES_USER"],
        dbname=empty_shared_database["POSTGRES_DB"],
    ) as conn:
        rows = conn.execute("SELECT app, name FROM django_migrations").fetchall()
    assert len(rows) == len(set(rows)) == len(applied)


def bootstrap_in_process(settings, **superuser):
    """call_command("bootstrap") with SUPERUSER as the configured admin;
    what it printed."""
    settings.BOOTSTRAP_SUPERUSER = {
        key.upper(): value for key, value in superuser.items()
    }
    output = StringIO()
    call_command("bootstrap", "--no-input", stdout=output, stderr=StringIO())
    return output.getvalue()


@pytest.mark.django_db
def test_superuser_is_created_once_and_never_changed(settings):
    first = bootstrap_in_process(
        settings,
        username="owner",
        email="owner@example.com",
        password="first passphrase for the owner",
    )
    hash_after_first = User.objects.get(username="owner").password
    second = bootstrap_in_process(
        settings,
        username="owner",
        email="changed@example.com",
        password="a different passphrase now",
    )

    assert 'admin account "owner" created' in first
    assert 'admin account "owner" already exists, left unchanged' in second
    (owner,) = User.objects.filter(username="owner")
    assert owner.is_superuser
    assert owner.is_staff
    assert owner.email == "owner@example.com"
    assert owner.password == hash_after_first
    assert owner.check_password("first passphrase for the owner")


@pytest.mark.django_db
def test_verbosity_zero_prints_nothing_on_success(settings):
    settings.BOOTSTRAP_SUPERUSER = {
        "USERNAME": "owner",
        "EMAIL": "",
        "PASSWORD": "first passphrase for the owner",
    }
    stdout, stderr = StringIO(), StringIO()

    call_command("bootstrap", "--verbosity", "0", stdout=stdout, stderr=stderr)

    assert (stdout.getvalue(), stderr.getvalue()) == ("", "")
    assert User.objects.filter(username="owner").exists()


@pytest.mark.parametrize("option", ["--timeout", "--lock-timeout", "--migrate-timeout"])
def test_a_negative_timeout_is_refused(option):
    with pytest.raises(CommandError, match=f"^{option} must be zero or more seconds"):
        call_command("bootstrap", option, "-1")


@pytest.mark.django_db
def test_weak_superuser_password_is_refused_with_a_message(settings):
    with pytest.raises(
        CommandError,
        match="DJANGO_SUPERUSER_PASSWORD is not accepted: This password is too common",
    ):
        bootstrap_in_process(settings, username="owner", email="", password="password")

    assert not User.objects.exists()


def test_url_special_password_works_end_to_end(throwaway_cluster, tmp_path):
    cluster = throwaway_cluster()
    cluster.start()
    cluster.create_role_and_database("sïte user", SPECIAL_PASSWORD, "sign up")
    password_file = tmp_path / "password"
    password_file.write_text(SPECIAL_PASSWORD + "\n")

    password_settings = (
        {"POSTGRES_PASSWORD": SPECIAL_PASSWORD},
        {"POSTGRES_PASSWORD_FILE": str(password_file)},
    )
    for index, password_setting in enumerate(password_settings):
        env = site_environment(
            DJANGO_SECRET_KEY=TEST_SECRET_KEY,
            POSTGRES_HOST="127.0.0.1",
            POSTGRES_PORT=cluster.port,
            POSTGRES_USER="sïte user",
            POSTGRES_DB="sign up",
            **password_setting,
        )
        bootstrap = manage("bootstrap", env=env)
        assert bootstrap.returncode == 0, bootstrap.stderr

        signup = manage(
            "shell",
            "--no-imports",
            "-c",
            "import time; from django.test import Client;"
            "from accounts.bots import TOKEN_FIELD, issue_token;"
            "r = Client(HTTP_HOST='localhost').post('/', {'name': 'Pat', "
            f"'email': 'pat{index}@example.com', "
            "TOKEN_FIELD: issue_token(now=time.time() - 60)});"
            "print(r.status_code, r['Location'])",
            env=env,
        )
        assert signup.returncode == 0, signup.stderr
        assert signup.stdout.strip() == "302 /thanks/"

    assert cluster.psql("SELECT count(*) FROM accounts_signup", "sign up") == "2"


# What libpq or the server says, and the plain words bootstrap prints.
PERMANENT_FAILURES = {
    'connection failed: FATAL:  password authentication failed for user "x"': (
        "authentication failed"
    ),
    'FATAL:  role "x" does not exist': "authentication failed (no such user)",
    'FATAL:  database "x" does not exist': "database missing",
    "fe_sendauth: no password supplied": "authentication failed (no password given)",
    'FATAL:  no pg_hba.conf entry for host "10.0.0.9"': (
        "authentication failed (connection not allowed by pg_hba.conf)"
    ),
}
PASSING_FAILURES = {
    "FATAL:  the database system is starting up": "starting up",
    "connection refused\n\tIs the server running": "unreachable (connection refused)",
    'could not translate host name "db" to address': (
        "unreachable (host name not found)"
    ),
    "failed to resolve host 'db': [Errno -2] Name or service not known": (
        "unreachable (host name not found)"
    ),
    "timeout expired": "unreachable (no answer)",
    "something new": "unreachable (something new)",
}


@pytest.mark.parametrize(
    ("message", "cause", "permanent"),
    [
        *((message, cause, True) for message, cause in PERMANENT_FAILURES.items()),
        *((message, cause, False) for message, cause in PASSING_FAILURES.items()),
    ],
)
def test_connection_failures_are_described_in_plain_words(message, cause, permanent):
    described, advice = describe_failure(Exception(message))

    assert (described, advice is not None) == (cause, permanent)


@pytest.mark.django_db(transaction=True)
def test_bootstrap_in_process_waits_for_a_held_migration_lock():
    """A second bootstrap waits while another holds the lock, then carries on."""
    from django.conf import settings

    from accounts.management.commands.bootstrap import MIGRATION_LOCK_KEY

    params = settings.DATABASES["default"]
    holder = psycopg.connect(
        host=params["HOST"],
        port=params["PORT"],
        user=params["USER"],
        dbname=params["NAME"],
        autocommit=True,
    )
    holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
    output = StringIO()
    finished = threading.Event()

    def run():
        try:
            call_command("bootstrap", stdout=output, stderr=StringIO())
            finished.set()
        finally:
            # The thread's own connection: left open, it kept the test
            # database busy when pytest-django dropped it at the end.
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        time.sleep(1.5)
        assert not finished.is_set(), "bootstrap did not wait for the lock"
        assert "Another bootstrap is applying migrations" in output.getvalue()
    finally:
        holder.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
        holder.close()
        thread.join(timeout=30)
    assert finished.is_set()
    assert "Database ready (schema already up to date" in output.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(("atomic", "lock_timeout"), [(True, "3s"), (False, "0")])
def test_migrations_wait_for_locks_without_a_limit_only_when_one_is_not_atomic(
    monkeypatch, atomic, lock_timeout
):
    """A non-atomic migration cut short by the lock timeout could leave half
    its work (an invalid index) for the retry to trip over."""
    from accounts.management.commands import bootstrap

    class Pending:
        pass

    pending = Pending()
    pending.atomic = atomic
    monkeypatch.setattr(
        bootstrap.MigrationExecutor,
        "migration_plan",
        lambda self, targets: [(pending, False)],
    )
    seen = []

    def migrate(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            seen.append(cursor.fetchone()[0])

    monkeypatch.setattr(bootstrap, "call_command", migrate)
    err = StringIO()

    call_command("bootstrap", stdout=StringIO(), stderr=err)

    assert seen == [lock_timeout]
    assert ("not atomic" in err.getvalue()) is not atomic
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == "0"  # reset afterwards
