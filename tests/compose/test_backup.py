"""
Backup and restore as docs/backups.md tells a person to run them, in a real Docker
engine: `docker compose run --rm backup` and `docker compose run --rm restore`
(profile "backup" of compose.yaml), with the stand-in postgres image.

Only `db` and the one-shot services run: nothing publishes a host port. The
restore goes into a database made from scratch (the data volume removed and
the server initialised again), as after losing a machine.
"""

import pytest

from tests.compose import engine
from tests.support.commands import site_environment

pytestmark = pytest.mark.engine

ROWS = 5000
CHECKSUM = (
    "SELECT count(*) || ':' || md5(string_agg(id || name || email, ',' ORDER BY id))"
    " FROM people"
)


@pytest.fixture
def project(compose_project):
    # Interpolated as on a fresh clone: no .env and no site variables (under
    # pytest-django the environment holds the test settings' POSTGRES_*).
    env = site_environment(BACKUP_KEEP="2")
    env.pop("DJANGO_SETTINGS_MODULE")
    project = compose_project(label="backup", env=env)
    project.env_for_tests = env
    yield project
    # `down --volumes` (the fixture's) keeps volumes that only services of an
    # inactive profile use: the backups. Remove them too.
    project("--profile", "backup", "down", "--volumes", check=False, timeout=120)


def sql(project, query):
    result = project(
        *("exec", "-T", "db", "psql", "-U", "signup", "-d", "signup"),
        *("-v", "ON_ERROR_STOP=1", "-At", "-c", query),
    )
    return result.stdout.strip()


def start_db(project):
    project("up", "--detach", "--wait", "--wait-timeout", "180", "db", timeout=600)


def test_backup_then_restore_into_a_new_empty_database(project, tmp_path):
    start_db(project)
    sql(
        project,
        "CREATE TABLE people (id bigint PRIMARY KEY, name text, email text);"
        f"INSERT INTO people SELECT n, 'Person ' || n || ' ✓', 'p' || n || '@x.io'"
        f" FROM generate_series(1, {ROWS}) AS n",
    )
    expected = sql(project, CHECKSUM)
    assert expected.startswith(f"{ROWS}:")

    # Three backups with BACKUP_KEEP=2: the oldest goes.
    outputs = [project("run", "--rm", "-T", "backup").stdout for _ in range(3)]
    assert 'Backing up database "signup" on db:5432 (1 tables' in outputs[0]
    assert "  [1/1] public.people" in outputs[0]
    assert "Backup written: signup-" in outputs[0]
    assert "Retention (BACKUP_KEEP=2): removed signup-" in outputs[2]
    listing = project("run", "--rm", "-T", "backup", "list").stdout
    names = [line.split()[0] for line in listing.splitlines()[1:]]
    assert len(names) == 2
    assert all(name.startswith("signup-") for name in names)

    # Lose the database: its container and its data volume. The backups and
    # the generated secrets stay in their own volumes.
    project("rm", "--stop", "--force", "db")
    engine.docker("volume", "rm", f"{project.name}_pgdata")
    start_db(project)
    assert sql(project, "SELECT to_regclass('people') IS NULL") == "t"

    restored = project("run", "--rm", "-T", "restore", timeout=300)

    assert f"Restoring {names[0]} " in restored.stdout
    assert "The database has data" not in restored.stdout  # it was empty
    assert "  [1/1] public.people" in restored.stdout
    assert sql(project, CHECKSUM) == expected


def test_backups_can_go_to_a_host_folder(project, tmp_path):
    start_db(project)
    sql(project, "CREATE TABLE people (id bigint PRIMARY KEY, name text, email text)")
    folder = tmp_path / "backups"

    project(
        "run",
        "--rm",
        "-T",
        "backup",
        env={**project.env_for_tests, "SIGNUP_BACKUP_DIR": str(folder)},
    )

    (dump,) = folder.iterdir()
    assert dump.name.startswith("signup-")
    assert dump.suffix == ".dump"
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    assert dump.stat().st_mode & 0o077 == 0
