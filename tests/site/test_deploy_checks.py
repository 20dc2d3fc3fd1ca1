"""Django's deployment checklist (manage.py check --deploy) for both profiles."""

import re

from tests.support.commands import (
    PROJECT_ROOT,
    TEST_SECRET_KEY,
    manage,
    site_environment,
)

HTTPS_ONLY_WARNINGS = {
    "security.W004",  # SECURE_HSTS_SECONDS: HSTS means nothing over http
    "security.W008",  # SECURE_SSL_REDIRECT
    "security.W010",  # SESSION_COOKIE_SECURE
    "security.W016",  # CSRF_COOKIE_SECURE
}


def deploy_check(**environment):
    return manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env=site_environment(
            DJANGO_SECRET_KEY=TEST_SECRET_KEY, POSTGRES_PASSWORD="x", **environment
        ),
    )


def test_https_public_url_passes_every_deployment_check():
    result = deploy_check(DJANGO_PUBLIC_URL="https://signup.example.com")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_default_http_profile_has_only_the_https_only_warnings():
    result = deploy_check()

    found = set(re.findall(r"\?: \((security\.W\d+)\)", result.stdout + result.stderr))
    assert found == HTTPS_ONLY_WARNINGS
    assert result.returncode == 1


def test_debug_on_is_reported_by_the_deployment_check():
    result = deploy_check(
        DJANGO_PUBLIC_URL="https://signup.example.com", DJANGO_DEBUG="true"
    )

    assert result.returncode == 1
    assert "security.W018" in result.stdout + result.stderr


def test_the_security_page_lists_the_warnings_that_remain_over_http():
    page = (PROJECT_ROOT / "docs" / "security.md").read_text()
    section = page.split("## `check --deploy`", 1)[1].split("\n## ", 1)[0]

    assert set(re.findall(r"`(security\.W\d+)`", section)) == HTTPS_ONLY_WARNINGS
