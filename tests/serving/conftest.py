"""
Fixtures of the loopback serving tests: Debian's nginx with the project's
template in front of gunicorn with the project's config, no Docker.

Without /usr/sbin/nginx or envsubst the tests that need them fail in CI
(CI=true) and are skipped elsewhere; ``apt-get install nginx gettext-base``
provides them.
"""

import os
import shutil

import pytest

from loopback.dns import FakeDNS
from loopback.nginx import NGINX_BINARY, Nginx
from loopback.processes import free_port, make_workdir
from tests.support.ci import unavailable
from tests.support.stack import EchoUpstream, ServingStack


@pytest.fixture(scope="session")
def nginx_binary():
    """Debian's nginx binary, or a failure (CI) or skip (elsewhere) saying why."""
    if not os.access(NGINX_BINARY, os.X_OK):
        reason = (
            f"{NGINX_BINARY} is missing: the serving tests need Debian's nginx "
            "(apt-get install nginx; .ci/run installs it)"
        )
        unavailable(reason)
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
    upstream = EchoUpstream()
    dns = FakeDNS({})
    workdir = make_workdir("signup-echo-")
    nginx = Nginx(
        workdir,
        {
            "NGINX_PORT": free_port(),
            "NGINX_UPSTREAM": f"127.0.0.1:{upstream.port}",
            "NGINX_RESOLVER": dns.address,
            "NGINX_STATIC_ROOT": workdir / "static",
        },
    )
    try:
        nginx.start().wait_ready()
        yield nginx, upstream
    finally:
        nginx.stop()
        dns.close()
        upstream.close()
        shutil.rmtree(workdir, ignore_errors=True)
