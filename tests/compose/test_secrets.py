"""
A stack whose `secrets` volume already holds a password and key, both files
readable by everyone: the stack keeps that password and key (its database was
initialised with that password), the files become readable by root only, and
the volume stays with the `secrets` service.
Only `db` and the one-shot service run: nothing publishes a host port.
"""

import pytest

from tests.compose import engine, images
from tests.support.commands import site_environment

pytestmark = pytest.mark.engine

LEGACY_PASSWORD = "LegacyPassword0123456789abcdefgh"
LEGACY_KEY = "LegacyKey" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"


def test_an_existing_secrets_volume_keeps_its_password_and_key(compose_project):
    env = site_environment()
    env.pop("DJANGO_SETTINGS_MODULE")
    project = compose_project(label="secrets", env=env)
    volume = f"{project.name}_secrets"
    engine.docker(
        *("volume", "create", "--label", f"com.docker.compose.project={project.name}"),
        *("--label", "com.docker.compose.volume=secrets", volume),
    )
    try:
        engine.docker(
            *("run", "--rm", "--entrypoint", "sh", "--volume", f"{volume}:/s"),
            images.image_for("postgres"),
            "-c",
            f"printf %s {LEGACY_PASSWORD} >/s/postgres_password"
            f" && printf %s {LEGACY_KEY} >/s/django_secret_key && chmod 0444 /s/*",
        )

        project("up", "--detach", "--wait", "--wait-timeout", "180", "db", timeout=600)
        handed_to_db = project(
            "exec", "-T", "db", "cat", "/run/signup-secrets/postgres_password"
        ).stdout
        login = project(
            *("exec", "-T", "db", "sh", "-c"),
            f"PGPASSWORD={LEGACY_PASSWORD} psql -h 127.0.0.1 -U signup -d signup"
            " -At -c 'SELECT 1'",
        ).stdout
        seen_by_the_generator = project(
            *("run", "--rm", "-T", "--entrypoint", "sh", "secrets", "-c"),
            "stat -c '%n %a' /run/signup-secrets/*"
            " && cat /run/secrets-for/web/django_secret_key",
        ).stdout
    finally:
        project("down", "--volumes", check=False, timeout=120)
        engine.docker("volume", "rm", "--force", volume, check=False)

    assert handed_to_db == LEGACY_PASSWORD
    assert login.strip() == "1"
    assert seen_by_the_generator.splitlines() == [
        "/run/signup-secrets/django_secret_key 400",
        "/run/signup-secrets/postgres_password 400",
        LEGACY_KEY,
    ]
