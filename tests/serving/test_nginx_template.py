"""
nginx/default.conf.template on its own: its variables, how it is rendered,
and whether nginx accepts the result with the values Compose gives it.
"""

import re
import shutil
import subprocess

import pytest

from loopback.nginx import (
    HSTS_SCRIPT,
    IMAGE_RATE_LIMITS,
    TEMPLATE,
    TEMPLATE_VARIABLES,
    Nginx,
    render_template,
)
from loopback.processes import PROJECT_ROOT, make_workdir
from signup_site.configuration import ConfigurationError, load

COMPOSE_VALUES = {
    "NGINX_PORT": "8080",
    "NGINX_UPSTREAM": "web:8000",
    "NGINX_RESOLVER": "127.0.0.11",
    "NGINX_STATIC_ROOT": "/srv/static",
    "NGINX_TRUSTED_PROXY": "127.0.0.1/32",
    **IMAGE_RATE_LIMITS,
    "DJANGO_ADMIN_URL": "admin/",
    "NGINX_HSTS": "",
}
# Where the template's variables are documented, with their Compose values.
CONFIGURATION_PAGE = PROJECT_ROOT / "docs" / "configuration.md"
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


def test_template_uses_exactly_the_documented_variables():
    text = TEMPLATE.read_text()
    configuration = CONFIGURATION_PAGE.read_text()
    section = configuration[configuration.index("## nginx template variables") :]

    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))

    assert used == set(TEMPLATE_VARIABLES)
    for name in TEMPLATE_VARIABLES:
        assert f"`{name}`" in section, name


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


def test_rendering_substitutes_only_the_defined_variables():
    # The image's 20-envsubst-on-templates.sh lists every defined variable for
    # envsubst; any other $name, nginx's own or an unset one, stays as it is.
    text = "listen ${NGINX_PORT}; $NGINX_PORT $host ${NGINX_UNSET} $NGINX_UNSET\n"

    rendered = render_template(text, {"NGINX_PORT": 8080})

    assert rendered == "listen 8080; 8080 $host ${NGINX_UNSET} $NGINX_UNSET\n"


def test_nginx_accepts_the_template_rendered_with_composes_values(nginx_binary):
    workdir = make_workdir("signup-nginx-t-")
    try:
        result = Nginx(workdir, COMPOSE_VALUES).test_config()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    assert "test is successful" in result.stderr


def test_only_the_signup_form_may_send_a_post_to_a_second_replica():
    """nginx sends a POST again only with non_idempotent: the sign-up form's
    location asks for it (sending a sign-up twice does no harm), no other
    does (tests/serving/test_lost_replica.py shows both happen)."""
    locations = dict(
        re.findall(
            r"^    location (.+?) \{(.*?)^    \}",
            TEMPLATE.read_text(),
            re.MULTILINE | re.DOTALL,
        )
    )
    retries = {
        location: re.findall(r"proxy_next_upstream\s+([^;]*);", body)
        for location, body in locations.items()
        if "proxy_pass" in body
    }

    assert retries == {
        "/": ["error timeout"],
        "= /": ["error timeout non_idempotent"],
    }


SECRET_KEY = "0123456789abcdefghijklmnopqrstuvwxyz" * 2


def script_hsts(environment):
    return subprocess.run(
        ["/bin/sh", "-ec", '. "$0"; printf %s "$NGINX_HSTS"', str(HSTS_SCRIPT)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )


def django_hsts(environment):
    """The Strict-Transport-Security Django sends on a secure response with
    the settings this environment gives (None: no header)."""
    from django.http import HttpResponse
    from django.middleware.security import SecurityMiddleware
    from django.test import RequestFactory, override_settings

    config = load({"DJANGO_SECRET_KEY": SECRET_KEY, **environment})
    if not config.https:
        return None
    with override_settings(
        SECURE_HSTS_SECONDS=config.hsts_seconds,
        SECURE_HSTS_INCLUDE_SUBDOMAINS=config.hsts_include_subdomains,
        SECURE_HSTS_PRELOAD=config.hsts_preload,
        SECURE_SSL_REDIRECT=False,
    ):
        middleware = SecurityMiddleware(lambda request: HttpResponse())
        response = middleware(RequestFactory().get("/", secure=True))
    return response.headers.get("Strict-Transport-Security")


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"DJANGO_PUBLIC_URL": "http://localhost:8080"},
        {"DJANGO_PUBLIC_URL": "https://signup.example.com"},
        {"DJANGO_PUBLIC_URL": " HTTPS://Signup.example.com:8443 "},
        {"DJANGO_PUBLIC_URL": "https://signup.example.com", "DJANGO_HSTS_SECONDS": "0"},
        {
            "DJANGO_PUBLIC_URL": "https://signup.example.com",
            "DJANGO_HSTS_SECONDS": "31536000",
            "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "no",
            "DJANGO_HSTS_PRELOAD": "0",
        },
        {
            "DJANGO_PUBLIC_URL": "https://signup.example.com",
            "DJANGO_HSTS_SECONDS": " 0600 ",
            "DJANGO_HSTS_INCLUDE_SUBDOMAINS": " ON ",
            "DJANGO_HSTS_PRELOAD": "off",
        },
        {
            "DJANGO_PUBLIC_URL": "https://signup.example.com",
            "DJANGO_HSTS_SECONDS": "",
            "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "",
            "DJANGO_HSTS_PRELOAD": "",
        },
    ],
)
def test_nginx_hsts_is_the_header_django_sends(environment):
    result = script_hsts(environment)

    assert result.returncode == 0, result.stderr
    assert (result.stdout or None) == django_hsts(environment)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("DJANGO_HSTS_PRELOAD", "maybe", "is not a boolean"),
        ("DJANGO_HSTS_INCLUDE_SUBDOMAINS", "2", "is not a boolean"),
        ("DJANGO_HSTS_SECONDS", "-5", "is not a whole number of at least 0."),
        ("DJANGO_HSTS_SECONDS", "ten", "is not a whole number of at least 0."),
    ],
)
def test_a_value_django_refuses_stops_nginx_too(name, value, problem):
    environment = {"DJANGO_PUBLIC_URL": "https://signup.example.com", name: value}
    result = script_hsts(environment)
    with pytest.raises(ConfigurationError) as refused:
        load({"DJANGO_SECRET_KEY": SECRET_KEY, **environment})

    assert result.returncode == 1
    (django_words,) = refused.value.problems
    assert problem in django_words
    assert result.stderr == f"signup-hsts: {django_words}\n"


def test_nginx_accepts_the_template_with_an_hsts_value(nginx_binary):
    workdir = make_workdir("signup-nginx-t-")
    value = "max-age=3600; includeSubDomains; preload"
    try:
        nginx = Nginx(workdir, {**COMPOSE_VALUES, "NGINX_HSTS": value})
        result = nginx.test_config()
        rendered = nginx.rendered.read_text()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    assert result.returncode == 0, result.stderr
    assert f'""       "{value}";' in rendered
