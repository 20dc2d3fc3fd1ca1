"""Make a database ready for the site: wait for it, migrate once, add the admin."""

import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.migrations.executor import MigrationExecutor

# Any fixed 64-bit number works; every replica must use the same one.
# (Derived from the ASCII of "signupmg".)
MIGRATION_LOCK_KEY = 0x7369676E75706D67
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 5.0

# Fragments of libpq/PostgreSQL messages, mapped to the cause in plain words.
# Server messages are English in the official image. A permanent cause stops
# bootstrap at once: waiting cannot fix it.
PERMANENT_CAUSES = {
    "password authentication failed": "authentication failed",
    "no password supplied": "authentication failed (no password given)",
    "role ": "authentication failed (no such user)",
    "pg_hba.conf": "authentication failed (connection not allowed by pg_hba.conf)",
    "database ": "database missing",
}
PASSING_CAUSES = {
    "the database system is starting up": "starting up",
    "the database system is shutting down": "shutting down",
    "the database system is in recovery mode": "in recovery",
    "connection refused": "unreachable (connection refused)",
    "could not translate host name": "unreachable (host name not found)",
    "failed to resolve host": "unreachable (host name not found)",
    "name or service not known": "unreachable (host name not found)",
    "temporary failure in name resolution": "unreachable (host name not found)",
    "timeout expired": "unreachable (no answer)",
    "no route to host": "unreachable (no route to host)",
}
ADVICE = {
    "authentication failed": (
        "check POSTGRES_USER and POSTGRES_PASSWORD. PostgreSQL keeps the password "
        "it was first initialised with: after changing it, change it inside "
        "PostgreSQL too, or remove the old data volume"
    ),
    "database missing": "create the database or fix POSTGRES_DB",
}


def describe_failure(exc):
    """Return (cause in plain words, permanent) for a failed connection attempt."""
    message = str(exc).lower()
    for causes, permanent in ((PERMANENT_CAUSES, True), (PASSING_CAUSES, False)):
        for fragment, cause in causes.items():
            if fragment in message and (
                fragment not in ("role ", "database ") or "does not exist" in message
            ):
                return cause, permanent
    last_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    return f"unreachable ({last_line.strip()})", False


class Command(BaseCommand):
    help = (
        "Make the database ready for the site: wait until PostgreSQL accepts an "
        "authenticated connection (retrying with back-off until --timeout), "
        "apply migrations under a PostgreSQL advisory lock so that any number of "
        "replicas can run this at once and each migration still runs once, then "
        "create the admin account from DJANGO_SUPERUSER_USERNAME, "
        "DJANGO_SUPERUSER_EMAIL and DJANGO_SUPERUSER_PASSWORD if they are set and "
        "that user does not exist yet (an existing user is never changed). Safe "
        "to run again: on a ready database it only checks. Exits non-zero with "
        "one line naming the server, the database and the cause when the "
        "database cannot be used."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="Seconds to keep retrying the connection before giving up "
            "(default: 60).",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            choices=tuple(connections),
            help='The database to bootstrap (default: "default").',
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Tells Django to NOT prompt the user for input of any kind.",
        )

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        self.interactive = options["interactive"]
        self.stdout_stream = options.get("stdout") or sys.stdout
        started = time.monotonic()
        connection = connections[options["database"]]
        if options["timeout"] < 0:
            raise CommandError("--timeout must be zero or more seconds.")

        self.wait_for_database(connection, options["timeout"])
        self.acquire_migration_lock(connection)
        try:
            applied = self.migrate(connection, options["database"])
            admin = self.create_superuser(options["database"])
        finally:
            self.release_migration_lock(connection)

        if self.verbosity >= 1:
            summary = (
                f"{applied} migration{'s' if applied != 1 else ''} applied"
                if applied
                else "schema already up to date"
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"Database ready ({summary}; {admin}) "
                    f"in {time.monotonic() - started:.1f} s."
                )
            )

    def target(self, connection):
        params = connection.get_connection_params()
        host = params.get("host") or "localhost"
        port = params.get("port") or 5432
        return f'PostgreSQL at {host}:{port}, database "{params.get("dbname")}"'

    def wait_for_database(self, connection, timeout):
        deadline = time.monotonic() + timeout
        delay = FIRST_RETRY_DELAY
        target = self.target(connection)
        attempt = 0
        while True:
            attempt += 1
            try:
                connection.ensure_connection()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            except OperationalError as exc:
                connection.close()
                cause, permanent = describe_failure(exc)
                if permanent:
                    advice = ADVICE.get(cause.split(" (")[0])
                    raise CommandError(
                        f"Cannot use {target}: {cause}"
                        + (f"; {advice}." if advice else ".")
                    ) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandError(
                        f"Cannot use {target}: timed out after {timeout:g} s; "
                        f"last attempt: {cause}."
                    ) from exc
                if self.verbosity >= 1:
                    self.stderr.write(
                        f"Waiting for {target}: {cause} "
                        f"(attempt {attempt}, {remaining:.0f} s left)"
                    )
                time.sleep(min(delay, remaining))
                delay = min(delay * 1.5, MAX_RETRY_DELAY)
            else:
                if self.verbosity >= 1:
                    self.stdout.write(f"Connected to {target}.")
                return

    def acquire_migration_lock(self, connection):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
            if cursor.fetchone()[0]:
                return
            if self.verbosity >= 1:
                self.stdout.write(
                    "Another bootstrap is applying migrations; "
                    "waiting for it to finish..."
                )
            # Session-level: held across the one-transaction-per-migration
            # commits, and released by PostgreSQL if the holder dies.
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])

    def release_migration_lock(self, connection):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
        except OperationalError:
            # The session is gone, and the lock with it.
            pass

    def migrate(self, connection, database):
        """Apply pending migrations; return how many were applied."""
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if not plan:
            return 0
        call_command(
            "migrate",
            database=database,
            interactive=self.interactive,
            verbosity=self.verbosity,
            stdout=self.stdout_stream,
        )
        return len(plan)

    def create_superuser(self, database):
        """Create the configured admin account if absent; say what happened."""
        configured = settings.BOOTSTRAP_SUPERUSER
        if configured is None:
            return "no admin account configured"
        username, email = configured["USERNAME"], configured["EMAIL"]
        user_model = get_user_model()
        manager = user_model._default_manager.db_manager(database)
        if manager.filter(**{user_model.USERNAME_FIELD: username}).exists():
            return f'admin account "{username}" already exists, left unchanged'
        candidate = user_model(**{user_model.USERNAME_FIELD: username}, email=email)
        try:
            validate_password(configured["PASSWORD"], user=candidate)
        except ValidationError as exc:
            raise CommandError(
                "DJANGO_SUPERUSER_PASSWORD is not accepted: " + " ".join(exc.messages)
            ) from exc
        manager.create_superuser(username, email, configured["PASSWORD"])
        return f'admin account "{username}" created'
