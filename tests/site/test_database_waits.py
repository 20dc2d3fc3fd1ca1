"""
Requests wait for the database a bounded time (signup_site.postgresql, turned
on by signup_site.wsgi); management commands do not, since a migration may
rightly run for minutes. Child processes, so the switch stays theirs.
"""

import subprocess
import sys
from urllib.parse import quote

from django.conf import settings

from tests.support.commands import PROJECT_ROOT, TEST_SECRET_KEY, manage
from tests.support.commands import site_environment as _site_environment

PROBE = """
from django.db import connection
with connection.cursor() as cursor:
    for name in ("lock_timeout", "statement_timeout"):
        cursor.execute(f"SHOW {name}")
        print(name, cursor.fetchone()[0])
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


def in_request_process(probe):
    """PROBE run by a process that serves requests (signup_site.wsgi)."""
    return subprocess.run(
        [sys.executable, "-c", "import signup_site.wsgi\n" + probe],
        env=environment(),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_request_serving_process_has_every_bound():
    result = in_request_process(PROBE)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["lock_timeout 10s", "statement_timeout 12s"]


def test_a_management_command_is_not_bounded():
    result = manage("shell", "--no-imports", "-c", PROBE, env=environment())

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["lock_timeout 0", "statement_timeout 0"]


KEEPALIVE_PROBE = """
from django.db import connection
with connection.cursor() as cursor:
    for name in ("keepalives_idle", "keepalives_interval", "keepalives_count",
                 "user_timeout"):
        cursor.execute(f"SHOW tcp_{name}")
        print(name, cursor.fetchone()[0])
"""
SERVER_KEEPALIVES = [
    "keepalives_idle 10",
    "keepalives_interval 5",
    "keepalives_count 3",
    "user_timeout 25000",
]


def test_the_server_closes_a_lost_clients_session_in_seconds_in_every_process():
    """Over TCP the server probes each session's client, a request process's
    and a command's (the mailer's) alike, so a session whose host is lost
    ends, and its locks go, in about 25 s."""
    served = in_request_process(KEEPALIVE_PROBE)
    command = manage("shell", "--no-imports", "-c", KEEPALIVE_PROBE, env=environment())

    assert served.returncode == 0, served.stderr
    assert command.returncode == 0, command.stderr
    assert served.stdout.splitlines() == SERVER_KEEPALIVES
    assert command.stdout.splitlines() == SERVER_KEEPALIVES


def test_options_in_the_url_come_after_the_keepalives():
    env = environment()
    user, password = (
        quote(env.get(name, ""), safe="")
        for name in ("POSTGRES_USER", "POSTGRES_PASSWORD")
    )
    env["DATABASE_URL"] = (
        f"postgres://{user}:{password}@{quote(env['POSTGRES_HOST'], safe='')}"
        f":{env['POSTGRES_PORT']}/postgres?options=-c%20tcp_keepalives_idle%3D30"
    )
    result = manage("shell", "--no-imports", "-c", KEEPALIVE_PROBE, env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["keepalives_idle 30", *SERVER_KEEPALIVES[1:]]
