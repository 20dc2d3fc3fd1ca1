"""
docker/postgres-tools/backup.sh, the script behind `docker compose run --rm backup` and
`... restore`, run here with the machine's PostgreSQL client tools against a
throwaway cluster with password authentication (the Compose path is in
tests/compose/test_backup.py).
"""

import os
import re
import subprocess

import psycopg
import pytest

from tests.support.commands import PROJECT_ROOT, TEST_SECRET_KEY, manage
from tests.support.commands import site_environment as base_environment

SCRIPT = PROJECT_ROOT / "docker" / "postgres-tools" / "backup.sh"
PASSWORD = "pa ss'\"$word;"
NAME = re.compile(r"^signup-\d{8}T\d{6}Z\.dump$")


@pytest.fixture
def cluster(throwaway_cluster):
    cluster = throwaway_cluster()
    cluster.start()
    cluster.create_role_and_database("signup", PASSWORD, "signup")
    return cluster


def site_env(cluster, database="signup"):
    return base_environment(
        DJANGO_SECRET_KEY=TEST_SECRET_KEY,
        POSTGRES_HOST="127.0.0.1",
        POSTGRES_PORT=cluster.port,
        POSTGRES_USER="signup",
        POSTGRES_PASSWORD=PASSWORD,
        POSTGRES_DB=database,
        DJANGO_SUPERUSER_USERNAME="owner",
        DJANGO_SUPERUSER_PASSWORD="an owner passphrase for tests",
    )


@pytest.fixture
def site_database(cluster):
    """The site's schema, an admin account and 1,000 sign-ups."""
    result = manage("bootstrap", env=site_env(cluster))
    assert result.returncode == 0, result.stderr
    with connect(cluster) as conn:
        conn.execute(
            "INSERT INTO accounts_signup (name, email, signed_up_at)"
            " SELECT 'Person ' || n || ' ✓ =1+1', 'p' || n || '@example.com',"
            "  now() - n * interval '1 hour'"
            " FROM generate_series(1, 1000) AS n"
        )
    return cluster


def connect(cluster, database="signup"):
    return psycopg.connect(
        host="127.0.0.1",
        port=cluster.port,
        user="signup",
        password=PASSWORD,
        dbname=database,
        autocommit=True,
    )


def run(cluster, *args, database="signup", backup_dir, **env):
    """docker/postgres-tools/backup.sh ARGS with the cluster's client tools
    first on PATH."""
    environment = {
        "PATH": f"{cluster.bindir}:{os.environ['PATH']}",
        "HOME": str(backup_dir.parent),
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(cluster.port),
        "POSTGRES_USER": "signup",
        "POSTGRES_PASSWORD": PASSWORD,
        "POSTGRES_DB": database,
        "BACKUP_DIR": str(backup_dir),
        **env,
    }
    return subprocess.run(
        ["sh", str(SCRIPT), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_contents(cluster, database):
    """{table: every row, in order} for each table of the site's schema."""
    with connect(cluster, database) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " ORDER BY tablename"
            )
        ]
        return {
            table: conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
            for table in tables
        }


def backups(directory, prefix="signup-"):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(prefix))


def test_a_backup_restored_into_an_empty_database_has_every_row(
    site_database, tmp_path
):
    cluster = site_database
    backup_dir = tmp_path / "backups"

    made = run(cluster, "backup", backup_dir=backup_dir)
    assert made.returncode == 0, made.stderr
    (name,) = backups(backup_dir)
    assert NAME.match(name)

    cluster.psql('CREATE DATABASE "restored" OWNER "signup"')
    restored = run(cluster, "restore", name, database="restored", backup_dir=backup_dir)
    assert restored.returncode == 0, restored.stderr

    original = table_contents(cluster, "signup")
    copy = table_contents(cluster, "restored")
    assert len(original["accounts_signup"]) == 1000
    assert "auth_user" in original
    assert copy == original
    # The restored database is one the site accepts as it is.
    check = manage("bootstrap", env=site_env(cluster, "restored"))
    assert check.returncode == 0, check.stderr
    assert "schema already up to date" in check.stdout
    assert "The database has data" not in restored.stdout  # it was empty


def test_backup_says_what_it_does_table_by_table(site_database, tmp_path):
    result = run(site_database, backup_dir=tmp_path / "b")  # backup by default

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f'Backing up database "signup" on 127.0.0.1:{site_database.port} ('
    )
    progress = [line for line in lines if line.startswith("  [")]
    total = int(re.search(r"\((\d+) tables", lines[0]).group(1))
    assert len(progress) == total > 5
    assert progress[-1].startswith(f"  [{total}/{total}] public.")
    assert "  [" + "1/" in progress[0]
    assert any(line.endswith("public.accounts_signup") for line in progress)
    assert re.search(
        r"Backup written: signup-\S+\.dump \(.+\) in \d+ s\.", result.stdout
    )
    assert result.stderr == ""


def test_backups_are_private_and_only_the_newest_are_kept(site_database, tmp_path):
    backup_dir = tmp_path / "b"
    for _ in range(3):
        result = run(site_database, "backup", backup_dir=backup_dir, BACKUP_KEEP="2")
        assert result.returncode == 0, result.stderr

    kept = backups(backup_dir)
    assert len(kept) == 2
    assert "Retention (BACKUP_KEEP=2): removed signup-" in result.stdout
    for name in kept:
        assert (backup_dir / name).stat().st_mode & 0o077 == 0

    listing = run(site_database, "list", backup_dir=backup_dir)
    assert listing.returncode == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()[1:]] == sorted(
        kept, reverse=True
    )


def test_restore_saves_the_data_it_replaces_and_brings_back_the_newest(
    site_database, tmp_path
):
    backup_dir = tmp_path / "b"
    assert run(site_database, "backup", backup_dir=backup_dir).returncode == 0
    with connect(site_database) as conn:
        conn.execute("DELETE FROM accounts_signup WHERE id % 2 = 0")
        conn.execute(
            "INSERT INTO accounts_signup (name, email) VALUES ('New', 'n@x.io')"
        )

    result = run(site_database, "restore", backup_dir=backup_dir)

    assert result.returncode == 0, result.stderr
    assert "The database has data: saving it first." in result.stdout
    (safety,) = backups(backup_dir, "before-restore-signup-")
    with connect(site_database) as conn:
        count = conn.execute("SELECT count(*) FROM accounts_signup").fetchone()[0]
        new = conn.execute(
            "SELECT count(*) FROM accounts_signup WHERE email = 'n@x.io'"
        ).fetchone()[0]
    assert (count, new) == (1000, 0)
    # The safety copy holds what was replaced.
    site_database.psql('CREATE DATABASE "before" OWNER "signup"')
    back = run(
        site_database, "restore", safety, database="before", backup_dir=backup_dir
    )
    assert back.returncode == 0, back.stderr
    assert len(table_contents(site_database, "before")["accounts_signup"]) == 501


def test_a_failed_backup_leaves_no_file(site_database, tmp_path):
    backup_dir = tmp_path / "b"

    result = run(site_database, backup_dir=backup_dir, POSTGRES_PASSWORD="wrong")

    assert result.returncode == 1
    assert "cannot connect to database" in result.stderr
    assert list(backup_dir.iterdir()) == []


def test_a_restore_that_fails_changes_nothing(site_database, tmp_path):
    backup_dir = tmp_path / "b"
    good = run(site_database, "backup", backup_dir=backup_dir)
    assert good.returncode == 0
    (name,) = backups(backup_dir)
    with connect(site_database) as conn:
        conn.execute("DELETE FROM accounts_signup WHERE id > 10")
        # Not in the backup, and in the way: the sign-ups' table cannot be
        # dropped while this view depends on it, so pg_restore fails after it
        # has already dropped other tables.
        conn.execute("CREATE VIEW recent AS SELECT * FROM accounts_signup")
    before = table_contents(site_database, "signup")

    result = run(site_database, "restore", name, backup_dir=backup_dir)

    assert result.returncode == 1
    assert "depend" in result.stderr
    assert "the database was left as it was" in result.stderr
    assert table_contents(site_database, "signup") == before


def test_the_password_can_come_from_the_generated_secrets(site_database, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "postgres_password").write_text(PASSWORD)

    result = run(
        site_database,
        "backup",
        backup_dir=tmp_path / "b",
        POSTGRES_PASSWORD="",
        SIGNUP_SECRETS_DIR=str(secrets),
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["restore"], {}, 'no backups of "signup"'),
        (["restore", "nope.dump"], {}, "no such backup"),
        (["backup"], {"BACKUP_KEEP": "seven"}, "BACKUP_KEEP must be a whole number"),
        (["frobnicate"], {}, 'unknown command "frobnicate"'),
    ],
)
def test_mistakes_are_explained(cluster, tmp_path, args, env, message):
    result = run(cluster, *args, backup_dir=tmp_path / "b", **env)

    assert result.returncode == 1
    assert message in result.stderr
