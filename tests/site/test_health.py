import json
import uuid

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from loopback.processes import free_port
from tests.support.commands import TEST_SECRET_KEY, manage, site_environment
from tests.support.stack import shared_database


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8000", "web", "10.1.2.3"])
def test_liveness_answers_for_any_host_without_the_database(client, host):
    # No django_db mark: pytest-django fails any database access here.
    response = client.get("/healthz", HTTP_HOST=host)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["localhost", "web:8000", "evil.example"])
def test_readiness_is_200_on_a_migrated_database_for_any_host(client, host):
    response = client.get("/readyz", HTTP_HOST=host)

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.mark.django_db
def test_readiness_is_503_while_a_migration_is_pending(client):
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations "
            "WHERE app = 'accounts' AND name = '0001_initial'"
        )

    response = client.get("/readyz", HTTP_HOST="localhost")

    assert response.status_code == 503
    assert response.json() == {"status": "migrations pending"}


def readyz_in_child_process(**environment):
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/readyz', HTTP_HOST='localhost');"
        "print(json.dumps([r.status_code, r.json()]))"
    )
    result = manage(
        "shell", "--no-imports", "-c", script, env=site_environment(**environment)
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_readiness_is_503_when_the_database_does_not_answer():
    status, body = readyz_in_child_process(
        DJANGO_SECRET_KEY=TEST_SECRET_KEY,
        POSTGRES_HOST="127.0.0.1",
        POSTGRES_PORT=free_port(),
        POSTGRES_PASSWORD="",
    )

    assert (status, body) == (503, {"status": "database unavailable"})


def test_readiness_is_503_on_an_empty_database(throwaway_cluster):
    cluster = throwaway_cluster()
    cluster.start()
    cluster.create_role_and_database("site", "site-password", "empty")

    status, body = readyz_in_child_process(
        DJANGO_SECRET_KEY=TEST_SECRET_KEY,
        POSTGRES_HOST="127.0.0.1",
        POSTGRES_PORT=cluster.port,
        POSTGRES_USER="site",
        POSTGRES_PASSWORD="site-password",
        POSTGRES_DB="empty",
    )

    assert (status, body) == (503, {"status": "migrations pending"})


def test_other_methods_on_probes_fall_through_to_the_site(client):
    response = client.post("/healthz", HTTP_HOST="localhost")

    assert response.status_code != 200


@pytest.fixture
def bootstrapped_database():
    """A new database on the shared server with a django_migrations table
    (owned by the server's superuser); yields (POSTGRES_* variables, an
    autocommit connection to it as that superuser)."""
    params = settings.DATABASES["default"]
    with (
        shared_database(params, prefix="signup_readyz") as env,
        psycopg.connect(
            host=params["HOST"],
            port=params["PORT"],
            user=params["USER"],
            password=params["PASSWORD"] or None,
            dbname=env["POSTGRES_DB"],
            autocommit=True,
        ) as admin,
    ):
        admin.execute(
            "CREATE TABLE django_migrations (id serial PRIMARY KEY, "
            "app varchar(255), name varchar(255), applied timestamptz)"
        )
        yield env, admin


def test_readiness_is_unavailable_when_django_migrations_may_not_be_read(
    bootstrapped_database,
):
    env, admin = bootstrapped_database
    role = f"signup_readyz_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute(f"REVOKE ALL ON django_migrations FROM PUBLIC, {role}")
    try:
        status, body = readyz_in_child_process(
            DJANGO_SECRET_KEY=TEST_SECRET_KEY, **{**env, "POSTGRES_USER": role}
        )
    finally:
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")

    # PostgreSQL's message names the table: "permission denied for table
    # django_migrations".
    assert (status, body) == (503, {"status": "database unavailable"})


def test_readiness_is_unavailable_when_django_migrations_stays_locked(
    bootstrapped_database,
):
    env, admin = bootstrapped_database
    with admin.transaction():
        admin.execute("LOCK TABLE django_migrations IN ACCESS EXCLUSIVE MODE")
        status, body = readyz_in_child_process(
            DJANGO_SECRET_KEY=TEST_SECRET_KEY, PGOPTIONS="-c lock_timeout=200", **env
        )

    # PostgreSQL's message quotes the statement, and so the table.
    assert (status, body) == (503, {"status": "database unavailable"})
