"""Make a database ready for the site: wait for it, migrate once, add the
admin, record the form's consent wording."""

import itertools
import re
import sys
import time
from contextlib import contextmanager, suppress

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection
from django.db.migrations.executor import MigrationExecutor
from psycopg.errors import LockNotAvailable

from accounts import consent

# Any fixed 64-bit number works; every replica must use the same one.
# (Derived from the ASCII of "signupmg".)
MIGRATION_LOCK_KEY = 0x7369676E75706D67
FIRST_RETRY_DELAY = 0.5
# How often a bootstrap waiting for another one's migrations asks for the lock.
LOCK_POLL_SECONDS = 0.25
MAX_RETRY_DELAY = 5.0
# A migration waiting for a table lock makes every later query of that table
# (each sign-up) wait behind it: it steps back after this long and retries.
MIGRATION_LOCK_TIMEOUT = 3.0
MAX_MIGRATION_RETRY_DELAY = 30.0

# A failed connection carries no SQLSTATE, only libpq's text (English in the
# official image): patterns of it, and the cause in plain words.
CAUSES = {
    "password authentication failed": "authentication failed",
    "no password supplied": "authentication failed (no password given)",
    'role ".*" does not exist': "authentication failed (no such user)",
    "pg_hba.conf": "authentication failed (connection not allowed by pg_hba.conf)",
    'database ".*" does not exist': "database missing",
    "the database system is starting up": "starting up",
    "the database system is shutting down": "shutting down",
    "the database system is in recovery mode": "in recovery",
    "connection refused": "unreachable (connection refused)",
    "translate host name|resolve host": "unreachable (host name not found)",
    "timeout expired": "unreachable (no answer)",
    "no route to host": "unreachable (no route to host)",
}
# Causes that waiting cannot fix: bootstrap stops at once with this advice.
ADVICE = {
    "authentication failed": "check POSTGRES_USER and POSTGRES_PASSWORD. "
    "PostgreSQL keeps the password it was first initialised with: after "
    "changing it, change it inside PostgreSQL too, or remove the old data volume",
    "database missing": "create the database or fix POSTGRES_DB",
}


def describe_failure(exc):
    """(the cause in plain words, advice if waiting cannot fix it) for EXC."""
    message = str(exc).strip() or repr(exc)
    for pattern, cause in CAUSES.items():
        if re.search(pattern, message, re.IGNORECASE):
            return cause, ADVICE.get(cause.split(" (")[0])
    return f"unreachable ({message.splitlines()[-1].strip()})", None


class Command(BaseCommand):
    help = (
        "Wait for PostgreSQL, migrate once however many replicas run this, and "
        "create the admin account if absent. See docs/architecture.md."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="Seconds to keep retrying the connection (default: 60).",
        )
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=MIGRATION_LOCK_TIMEOUT,
            help="Seconds a migration waits for a table lock before it steps "
            "back and retries, so the site never waits longer behind it "
            f"(default: {MIGRATION_LOCK_TIMEOUT:g}; 0 waits as long as it takes).",
        )
        parser.add_argument(
            "--migrate-timeout",
            type=float,
            default=60.0,
            help="Seconds to keep retrying migrations that cannot get their "
            "locks (default: 60).",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Tells Django to NOT prompt the user for input of any kind.",
        )

    def handle(self, *args, **options):
        for option in ("timeout", "lock_timeout", "migrate_timeout"):
            if options[option] < 0:
                name = option.replace("_", "-")
                raise CommandError(f"--{name} must be zero or more seconds.")
        self.verbose = options["verbosity"] >= 1
        started = time.monotonic()
        self.wait_for_database(options["timeout"])
        with self.migration_lock():
            schema = self.migrate(options)
            admin = self.create_superuser()
            # What the form says about consent now, so each sign-up's
            # version has its text on record (accounts.consent).
            consent.record()
        if self.verbose:
            seconds = time.monotonic() - started
            done = f"Database ready ({schema}; {admin}) in {seconds:.1f} s."
            self.stdout.write(self.style.SUCCESS(done))

    def wait_for_database(self, timeout):
        params = connection.get_connection_params()
        target = (
            f"PostgreSQL at {params.get('host') or 'localhost'}:"
            f'{params.get("port") or 5432}, database "{params.get("dbname")}"'
        )
        deadline = time.monotonic() + timeout
        delay = FIRST_RETRY_DELAY
        for attempt in itertools.count(1):
            try:
                connection.ensure_connection()
                break
            except OperationalError as exc:
                cause, advice = describe_failure(exc)
                if advice:
                    raise CommandError(
                        f"Cannot use {target}: {cause}; {advice}."
                    ) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandError(
                        f"Cannot use {target}: timed out after {timeout:g} s; "
                        f"last attempt: {cause}."
                    ) from exc
                if self.verbose:
                    self.stderr.write(
                        f"Waiting for {target}: {cause} "
                        f"(attempt {attempt}, {remaining:.0f} s left)"
                    )
                time.sleep(min(delay, remaining))
                delay = min(delay * 1.5, MAX_RETRY_DELAY)
        if self.verbose:
            self.stdout.write(f"Connected to {target}.")

    @contextmanager
    def migration_lock(self):
        # Session-level: held across the one-transaction-per-migration
        # commits, and released by PostgreSQL if the holder dies.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
            if not cursor.fetchone()[0]:
                if self.verbose:
                    self.stdout.write(
                        "Another bootstrap is applying migrations; "
                        "waiting for it to finish..."
                    )
                # Asked again and again, not waited for in one statement: a
                # waiting statement holds a snapshot, which the holder's
                # CREATE INDEX CONCURRENTLY waits for, a deadlock.
                while True:
                    time.sleep(LOCK_POLL_SECONDS)
                    cursor.execute(
                        "SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_KEY]
                    )
                    if cursor.fetchone()[0]:
                        break
        try:
            yield
        finally:
            # An OperationalError here: no session left, so no lock either.
            with suppress(OperationalError), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])

    def migrate(self, options):
        """Apply pending migrations; say how many."""
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if not plan:
            return "schema already up to date"
        deadline = time.monotonic() + options["migrate_timeout"]
        delay = FIRST_RETRY_DELAY
        lock_timeout = options["lock_timeout"]
        if any(not migration.atomic for migration, _backwards in plan):
            # One cut short can leave half its work (an invalid index) for the
            # retry to trip over; such migrations take only locks that do not
            # hold sign-ups up (docs/operations.md#migrations-under-load).
            lock_timeout = 0
            if self.verbose:
                self.stderr.write(
                    "A migration that is not atomic is pending: the migrations "
                    "wait for their locks as long as it takes."
                )
        with self.lock_timeout(lock_timeout):
            for attempt in itertools.count(1):
                try:
                    call_command(
                        "migrate",
                        interactive=options["interactive"],
                        verbosity=options["verbosity"],
                        stdout=options.get("stdout") or sys.stdout,
                    )
                    break
                except OperationalError as exc:
                    # The failed migration was rolled back; the ones before
                    # it stay applied, and the next attempt goes on from there.
                    if not isinstance(exc.__cause__, LockNotAvailable):
                        raise
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise CommandError(
                            "Migrations could not get their table locks within "
                            f"{options['migrate_timeout']:g} s: another session "
                            "holds them (see pg_stat_activity)."
                        ) from exc
                    if self.verbose:
                        self.stderr.write(
                            f"A migration waited {lock_timeout:g} s "
                            "for a table lock and stepped back so that the site "
                            f"is not held up; retrying in {min(delay, remaining):.1f}"
                            f" s (attempt {attempt}, {remaining:.0f} s left)"
                        )
                    time.sleep(min(delay, remaining))
                    delay = min(delay * 2, MAX_MIGRATION_RETRY_DELAY)
        return f"{len(plan)} migration{'s' if len(plan) != 1 else ''} applied"

    @contextmanager
    def lock_timeout(self, seconds):
        """This session's lock_timeout is SECONDS (0: none) while inside."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false)",
                [f"{round(seconds * 1000)}ms"],
            )
        try:
            yield
        finally:
            with suppress(OperationalError), connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")

    def create_superuser(self):
        """Create the configured admin account if absent; say what happened."""
        configured = settings.BOOTSTRAP_SUPERUSER
        if configured is None:
            return "no admin account configured"
        username, email = configured["USERNAME"], configured["EMAIL"]
        password = configured["PASSWORD"]
        User = get_user_model()
        if User._default_manager.filter(**{User.USERNAME_FIELD: username}).exists():
            return f'admin account "{username}" already exists, left unchanged'
        try:
            validate_password(
                password, User(**{User.USERNAME_FIELD: username}, email=email)
            )
        except ValidationError as exc:
            raise CommandError(
                "DJANGO_SUPERUSER_PASSWORD is not accepted: " + " ".join(exc.messages)
            ) from exc
        User._default_manager.create_superuser(username, email, password)
        return f'admin account "{username}" created'
