"""
Fixtures of the loopback serving tests: Debian's nginx with the project's
template in front of gunicorn with the project's config, no Docker.

Without /usr/sbin/nginx or envsubst the tests that need them fail in CI
(CI=true) and are skipped elsewhere; ``apt-get install nginx gettext-base``
provides them.
"""

import shutil

import pytest

from loopback.nginx import NGINX_BINARY
from tests.support.ci import require_program, unavailable
from tests.support.stack import ServingStack, nginx_before_echo


@pytest.fixture(scope="session")
def nginx_binary():
    """Debian's nginx binary, or a failure (CI) or skip (elsewhere) saying why."""
    require_program(NGINX_BINARY, "the serving tests need Debian's nginx", "nginx")
    if shutil.which("envsubst") is None:
        unavailable(
            "envsubst renders the nginx template (apt-get install gettext-base)"
        )
    return NGINX_BINARY


@pytest.fixture(scope="session")
def serving_stack(nginx_binary):
    """nginx -> gunicorn -> Django -> a fresh database, shared by the session.

    Tests that stop gunicorn start it again (``restart_gunicorn``).
    """
    from django.conf import settings

    stack = ServingStack(settings.DATABASES["default"]).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def echo_proxy(nginx_binary):
    """nginx with the project's template in front of a server that echoes the
    headers it receives: what the site would see, exactly."""
    with nginx_before_echo("signup-echo-") as (nginx, upstream, _dns):
        yield nginx, upstream
