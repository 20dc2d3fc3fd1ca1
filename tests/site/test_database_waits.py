"""
Requests wait for the database a bounded time (signup_site.postgresql, turned
on by signup_site.wsgi); management commands do not, since a migration may
rightly run for minutes. Child processes, so the switch stays theirs.
"""

import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Signup
from tests.support.commands import PROJECT_ROOT, TEST_SECRET_KEY, manage
from tests.support.commands import site_environment as _site_environment

# Longer than the requests' statement timeout (3 s).
SLOW_STATEMENT = "SELECT pg_sleep(3.5)"
PROBE = f"""
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SHOW lock_timeout")
    print("lock_timeout", cursor.fetchone()[0])
    cursor.execute("SHOW statement_timeout")
    print("statement_timeout", cursor.fetchone()[0])
    try:
        cursor.execute("{SLOW_STATEMENT}")
    except Exception as exc:
        print("slow statement:", type(exc).__name__)
    else:
        print("slow statement: finished")
"""


def environment():
    database = settings.DATABASES["default"]
    return _site_environment(
        DJANGO_SECRET_KEY=TEST_SECRET_KEY,
        POSTGRES_HOST=database["HOST"],
        POSTGRES_PORT=database["PORT"],
        POSTGRES_USER=database["USER"],
        POSTGRES_PASSWORD=database["PASSWORD"],
        POSTGRES_DB="postgres",
    )


def test_a_request_serving_process_has_every_bound():
    result = subprocess.run(
        [sys.executable, "-c", "import signup_site.wsgi\n" + PROBE],
        env=environment(),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "lock_timeout 1s",
        "statement_timeout 3s",
        "slow statement: OperationalError",
    ]


def test_a_management_command_is_not_bounded():
    result = manage("shell", "--no-imports", "-c", PROBE, env=environment())

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "lock_timeout 0",
        "statement_timeout 0",
        "slow statement: finished",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_sign_up_is_inserted_in_a_transaction_of_its_own():
    """So its COMMIT is sent only once the INSERT has returned: a server that
    froze mid-INSERT and wakes after the site gave up rolls it back."""
    in_transaction = []

    def record(execute, sql, params, many, context):
        in_transaction.append(context["connection"].in_atomic_block)
        return execute(sql, params, many, context)

    assert not connection.in_atomic_block
    with connection.execute_wrapper(record):
        Signup.objects.register({"name": "Ada", "email": "ada@example.com"})

    assert in_transaction == [True]
    assert not connection.in_atomic_block
