"""
The test suite's serving stack: the loopback package's nginx, gunicorn and
DNS stand-in (loopback/) around a fresh database on the shared PostgreSQL
server, with the helpers the serving and browser tests share.
"""

import contextlib
import json
import re
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg
import requests

from loopback.browser import admin_login, form_token
from loopback.dns import FakeDNS
from loopback.gunicorn import Gunicorn
from loopback.nginx import TEMPLATE, UPSTREAM_NAME, Nginx, nginx_hsts
from loopback.processes import (
    SITE_SETTINGS,
    ProcessGroup,
    free_port,
    make_workdir,
    site_environment,
    wait_for,
)
from tests.support.commands import TEST_SECRET_KEY, manage
from tests.support.forms import TOKEN_FIELD, signed

# A page nginx passes to the site that needs no database: what the tests ask
# for to see that nginx reaches gunicorn (nginx answers /healthz itself, 404).
PROXIED_PROBE = "/thanks/"


def nginx_seconds(directive):
    """The seconds DIRECTIVE (a timeout) is set to in the nginx template."""
    match = re.search(rf"^\s*{directive}\s+(\d+)s;", TEMPLATE.read_text(), re.MULTILINE)
    assert match, directive
    return int(match.group(1))


class EchoUpstream:
    """An HTTP server that records each request's headers and answers with
    them as JSON; ``?status=N`` picks the status code."""

    def __init__(self):
        self.requests = []
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                query = parse_qs(urlsplit(self.path).query)
                status = int(query.get("status", ["200"])[0])
                recorded.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": list(self.headers.items()),
                    }
                )
                body = json.dumps({"echo": True, "status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def nginx_before_echo(
    prefix, *, upstream_host="127.0.0.1", records=None, resolver=None
):
    """nginx with the project's template in front of an EchoUpstream reached
    as UPSTREAM_HOST, names answered by a FakeDNS holding RECORDS; RESOLVER
    turns the DNS stand-in's address into NGINX_RESOLVER. Yields (nginx,
    upstream, dns)."""
    upstream = EchoUpstream()
    dns = FakeDNS(records or {})
    workdir = make_workdir(prefix)
    nginx = Nginx(
        workdir,
        {
            "NGINX_PORT": free_port(),
            "NGINX_UPSTREAM": f"{upstream_host}:{upstream.port}",
            "NGINX_RESOLVER": resolver(dns.address) if resolver else dns.address,
            "NGINX_STATIC_ROOT": workdir / "static",
        },
    )
    try:
        nginx.start().wait_ready()
        yield nginx, upstream, dns
    finally:
        nginx.stop()
        dns.close()
        upstream.close()
        shutil.rmtree(workdir, ignore_errors=True)


def connect(database, **options):
    """A psycopg connection to DATABASE, given as its POSTGRES_* variables."""
    return psycopg.connect(
        host=database["POSTGRES_HOST"],
        port=database["POSTGRES_PORT"],
        user=database["POSTGRES_USER"],
        password=database["POSTGRES_PASSWORD"] or None,
        dbname=database["POSTGRES_DB"],
        **options,
    )


@contextlib.contextmanager
def shared_database(params, prefix="signup_serving"):
    """A new database on the shared server (PARAMS: Django's DATABASES entry);
    yields the POSTGRES_* variables that point the site at it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = {
        "host": params["HOST"],
        "port": params["PORT"],
        "user": params["USER"],
        "password": params["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "POSTGRES_HOST": params["HOST"],
            "POSTGRES_PORT": params["PORT"],
            "POSTGRES_USER": params["USER"],
            "POSTGRES_PASSWORD": params["PASSWORD"],
            "POSTGRES_DB": name,
        }
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def migrated_database(prefix):
    """A migrated database on the shared server; yields (the environment of a
    site process using it, its POSTGRES_* variables)."""
    from django.conf import settings

    with shared_database(settings.DATABASES["default"], prefix) as database:
        env = site_environment(DJANGO_SECRET_KEY=TEST_SECRET_KEY, **database)
        manage("migrate", "--no-input", env=env, check=True)
        yield env, database


def assert_branded_error_page(response, status, heading):
    html = response.text
    assert response.status_code == status
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert f"<h1>{heading}</h1>" in html
    # The site's own stylesheet, which nginx serves while the app is down.
    assert '<link rel="stylesheet" href="/static/site/site.css">' in html
    assert 'class="card"' in html
    assert '<a href="/">Back to the sign-up form</a>' in html
    # No script, nothing from any other site, nothing inline for a CSP to block.
    assert "<script" not in html
    assert "<style" not in html
    assert "style=" not in html
    assert "src=" not in html
    assert "http://" not in html
    assert "https://" not in html
    request_id = response.headers["X-Request-ID"]
    assert f"Reference: {request_id}</p>" in html


class ServingStack(ProcessGroup):
    """nginx -> gunicorn -> Django -> PostgreSQL on loopback.

    The site's public URL (http://127.0.0.1:<gunicorn port>) is not the
    address the tests' "browser" uses (http://localhost:<nginx port>), so a
    form POST passes CSRF only if nginx forwards Host with its port.
    """

    def __init__(self, database_params, **environment):
        """ENVIRONMENT: more variables for the site's processes (gunicorn's
        WEB_CONCURRENCY, say)."""
        self.database_params = database_params
        self.extra_environment = environment
        super().__init__()

    def _start(self):
        self.root = make_workdir("signup-serving-")
        self.callback(shutil.rmtree, self.root, ignore_errors=True)
        self.static_root = self.root / "static"
        self.dns = FakeDNS({UPSTREAM_NAME: "127.0.0.1"})
        self.callback(self.dns.close)
        self.database = self.enter_context(shared_database(self.database_params))

        gunicorn_port = free_port()
        self.public_url = f"http://127.0.0.1:{gunicorn_port}"
        self.env = site_environment(
            **{
                "DJANGO_SECRET_KEY": TEST_SECRET_KEY,
                "DJANGO_SETTINGS_MODULE": SITE_SETTINGS,
                "LOOPBACK_STATIC_ROOT": self.static_root,
                "DJANGO_PUBLIC_URL": self.public_url,
                "DJANGO_ALLOWED_HOSTS": "localhost",
                **self.database,
                **self.extra_environment,
            }
        )
        manage("bootstrap", "--timeout", "30", env=self.env, check=True)
        manage("collectstatic", "--no-input", env=self.env, check=True)

        self.gunicorn = Gunicorn(
            self.root, {"WEB_CONCURRENCY": "2", **self.env}, port=gunicorn_port
        )
        self.callback(self.gunicorn.stop)
        self.gunicorn.start().wait_ready()

        self.nginx = self.make_nginx("nginx")
        self.nginx.start().wait_ready()
        wait_for(
            self.reaches_the_site,
            timeout=15,
            message=f"{PROXIED_PROBE} through nginx",
        )

    def reaches_the_site(self):
        """Whether nginx gets an answer from the site (a page, or with an
        https:// public URL its redirect), not one of its own 502s."""
        return self.get(PROXIED_PROBE).status_code in (200, 301)

    def make_nginx(self, name, *, template_text=None, **variables):
        """Another nginx with the stack's variables (overridden by VARIABLES);
        stopped with the stack."""
        nginx = Nginx(
            self.root / name,
            {
                "NGINX_PORT": free_port(),
                "NGINX_UPSTREAM": f"{UPSTREAM_NAME}:{self.gunicorn.port}",
                "NGINX_RESOLVER": self.dns.address,
                "NGINX_STATIC_ROOT": self.static_root,
                # One variable for both, as compose.yaml passes it.
                "DJANGO_ADMIN_URL": self.env.get("DJANGO_ADMIN_URL", "admin/"),
                "NGINX_HSTS": nginx_hsts(self.env),
                **variables,
            },
            template_text=template_text,
        )
        self.callback(nginx.stop)
        return nginx

    # The tests' browser: it reaches nginx as http://localhost:<port>.

    @property
    def browser_host(self):
        return f"localhost:{self.nginx.port}"

    def request(self, method, path, *, nginx=None, headers=None, **kwargs):
        """An HTTP request through NGINX (default: the stack's) with the
        browser's Host; redirects are not followed."""
        nginx = nginx or self.nginx
        headers = {"Host": f"localhost:{nginx.port}", **(headers or {})}
        kwargs.setdefault("allow_redirects", False)
        timeout = kwargs.pop("timeout", 30)
        return requests.request(
            method, nginx.url(path), headers=headers, timeout=timeout, **kwargs
        )

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def wait_for_status(self, path, status, *, timeout, interval=0.2):
        """GET PATH until it answers STATUS; return that response."""
        answered = []

        def answers():
            answered.append(self.get(path))
            return answered[-1].status_code == status

        wait_for(
            answers,
            timeout=timeout,
            interval=interval,
            message=f"GET {path} answering {status}",
        )
        return answered[-1]

    def csrf_pair(self, *, nginx=None):
        """(form token, csrftoken cookie) from the sign-up page, as a browser
        gets them; a browser reuses the pair for every submission."""
        form = self.get("/", nginx=nginx)
        assert form.status_code == 200, form.text[:500]
        return form_token(form.text), form.cookies["csrftoken"]

    def form_token(self, *, age=60):
        """The sign-up form token of a page drawn AGE seconds ago, signed with
        the stack's secret key (accounts.bots)."""
        return signed({}, age=age, key=TEST_SECRET_KEY)[TOKEN_FIELD]

    def sign_up(self, name, email, *, nginx=None, pair=None, headers=None, **kwargs):
        """POST the form as a browser at http://localhost:<port> would: the
        CSRF cookie and token, a form token older than the minimum fill time,
        Origin and Host with the port."""
        nginx = nginx or self.nginx
        token, cookie = pair or self.csrf_pair(nginx=nginx)
        return self.post(
            "/",
            nginx=nginx,
            data={
                "csrfmiddlewaretoken": token,
                "name": name,
                "email": email,
                TOKEN_FIELD: self.form_token(),
            },
            headers={
                "Origin": f"http://localhost:{nginx.port}",
                "Cookie": f"csrftoken={cookie}",
                **(headers or {}),
            },
            **kwargs,
        )

    def admin_session(self, username, password):
        """A requests.Session logged in to the admin through nginx, as the
        browser at http://localhost:<port>; the superuser is made first if
        it is not there yet. The session sends the browser's Host itself;
        pass origin_headers() with every POST."""
        script = (
            "from django.contrib.auth.models import User;"
            f"User.objects.filter(username={username!r}).exists() or "
            f"User.objects.create_superuser({username!r}, 'owner@example.com', "
            f"{password!r})"
        )
        created = manage("shell", "--no-imports", "-c", script, env=self.env)
        assert created.returncode == 0, created.stderr
        return admin_login(
            self.nginx.url(""), self.browser_host, username, password, timeout=10
        )

    def origin_headers(self):
        return {"Origin": f"http://{self.browser_host}"}

    def connect(self):
        """A psycopg connection to the stack's database."""
        return connect(self.database)

    def signup_count(self):
        with self.connect() as conn:
            return conn.execute("SELECT count(*) FROM accounts_signup").fetchone()[0]

    def signups(self, email):
        """(name, email) rows stored for EMAIL, straight from the database."""
        with self.connect() as conn:
            return conn.execute(
                "SELECT name, email FROM accounts_signup"
                " WHERE lower(email) = lower(%s)",
                (email,),
            ).fetchall()

    def gunicorn_saw(self, request_id):
        """Whether gunicorn's access log has a line for REQUEST_ID, after a
        request that does reach gunicorn has been logged (so a line for the
        earlier request would have been written by then)."""
        marker = uuid.uuid4().hex
        response = self.get(f"{PROXIED_PROBE}?after={marker}")
        assert response.status_code == 200, response.text
        self.gunicorn.access_log.wait_for_line(marker)
        return bool(self.gunicorn.access_log.matching(f"rid={request_id} "))

    def restart_gunicorn(self):
        if not self.gunicorn.running:
            self.gunicorn.start().wait_ready()
        wait_for(
            self.reaches_the_site,
            timeout=15,
            message=f"{PROXIED_PROBE} through nginx after a gunicorn restart",
        )
