"""
nginx/default.conf.template on its own: its variables, how it is rendered,
and whether nginx accepts the result with the values Compose gives it.
"""

import re
import shutil
import subprocess

from tests.support.ci import unavailable
from tests.support.stack import (
    IMAGE_RATE_LIMITS,
    TEMPLATE,
    TEMPLATE_VARIABLES,
    Nginx,
    make_workdir,
    render_template,
)

COMPOSE_VALUES = {
    "NGINX_PORT": "8080",
    "NGINX_UPSTREAM": "web:8000",
    "NGINX_RESOLVER": "127.0.0.11",
    "NGINX_STATIC_ROOT": "/srv/static",
    "NGINX_TRUSTED_PROXY": "127.0.0.1/32",
    **IMAGE_RATE_LIMITS,
    "DJANGO_ADMIN_URL": "admin/",
}
# Variables the official image's environment has besides the project's: the
# hook substitutes every defined variable, so the template must not use them.
IMAGE_ENVIRONMENT = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "HOSTNAME": "0123456789ab",
    "NGINX_VERSION": "1.29.0",
    "NJS_VERSION": "0.9.0",
    "PKG_RELEASE": "1~bookworm",
}


def header_comment(text):
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def test_template_uses_exactly_the_documented_variables():
    text = TEMPLATE.read_text()

    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    header = header_comment(text)

    assert used == set(TEMPLATE_VARIABLES)
    for name in TEMPLATE_VARIABLES:
        assert re.search(rf"^#\s+{name}\s", header, re.MULTILINE), name


def test_rendering_replaces_the_variables_and_keeps_nginxs_own():
    rendered = render_template(
        TEMPLATE.read_text(), {**IMAGE_ENVIRONMENT, **COMPOSE_VALUES}
    )

    assert "${" not in rendered
    assert "listen 8080 default_server;" in rendered
    assert "set $signup_upstream web:8000;" in rendered
    assert "resolver 127.0.0.11 valid=5s ipv6=off;" in rendered
    assert "alias /srv/static/;" in rendered
    for variable in ("$http_host", "$remote_addr", "$request_id", "$scheme", "$uri"):
        assert variable in rendered


def test_rendering_is_the_official_images_envsubst_rule():
    envsubst = shutil.which("envsubst")
    if envsubst is None:
        unavailable("envsubst (Debian package gettext-base) is not installed")
    environment = {**IMAGE_ENVIRONMENT, **COMPOSE_VALUES}
    # What 20-envsubst-on-templates.sh runs: every defined variable, listed.
    shell_format = " ".join(f"${{{name}}}" for name in environment)

    result = subprocess.run(
        [envsubst, shell_format],
        input=TEMPLATE.read_text(),
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert result.stdout == render_template(TEMPLATE.read_text(), environment)


def test_nginx_accepts_the_template_rendered_with_composes_values(nginx_binary):
    workdir = make_workdir("signup-nginx-t-")
    try:
        result = Nginx(workdir, COMPOSE_VALUES).test_config()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    assert "test is successful" in result.stderr


def test_a_post_is_never_sent_to_a_second_replica():
    """nginx retries a POST only with non_idempotent; the template must not
    ask for it (a sign-up must not be submitted twice)."""
    directives = re.findall(
        r"^\s*proxy_next_upstream\s+([^;]*);", TEMPLATE.read_text(), re.MULTILINE
    )

    assert directives == ["error timeout"]
