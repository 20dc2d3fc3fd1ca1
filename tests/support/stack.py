"""
The serving stack on loopback, without Docker: Debian's nginx with the
project's template in front of gunicorn with the project's config, a fresh
database on the shared PostgreSQL server, and a small DNS server that plays
Docker's embedded one, so nginx resolves ``web`` the way it does in Compose.

Every process is a child started here and stopped by its pid.
"""

import contextlib
import json
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import requests

from tests.support.commands import PROJECT_ROOT, TEST_SECRET_KEY, manage
from tests.support.commands import site_environment as _site_environment
from tests.support.postgres import free_port

NGINX_BINARY = Path("/usr/sbin/nginx")
MIME_TYPES = Path("/etc/nginx/mime.types")
TEMPLATE = PROJECT_ROOT / "docker" / "nginx" / "default.conf.template"
GUNICORN_CONFIG = PROJECT_ROOT / "docker" / "web" / "gunicorn.conf.py"
HSTS_SCRIPT = PROJECT_ROOT / "docker" / "nginx" / "hsts.envsh"
# The production settings with STATIC_ROOT in a temporary directory.
SITE_SETTINGS = "tests.serving.site_settings"

TEMPLATE_VARIABLES = (
    "NGINX_PORT",
    "NGINX_UPSTREAM",
    "NGINX_RESOLVER",
    "NGINX_STATIC_ROOT",
    "NGINX_TRUSTED_PROXY",
    "NGINX_SIGNUP_RATE",
    "NGINX_SIGNUP_BURST",
    "NGINX_LOGIN_RATE",
    "NGINX_LOGIN_BURST",
    "DJANGO_ADMIN_URL",
    "NGINX_HSTS",
)
# The template's other variables for the tests. The image trusts 127.0.0.1,
# the nginx container's own loopback, where no client is; here the clients
# are on 127.0.0.1, so an address none of them uses stands in for it. Rate
# limits are high enough for tests that post many times from one address;
# the rate-limit tests start an nginx with the image's numbers.
TEMPLATE_DEFAULTS = {
    "NGINX_TRUSTED_PROXY": "127.0.0.254/32",
    "NGINX_SIGNUP_RATE": "100000r/s",
    "NGINX_SIGNUP_BURST": "100000",
    "NGINX_LOGIN_RATE": "100000r/s",
    "NGINX_LOGIN_BURST": "100000",
    "DJANGO_ADMIN_URL": "admin/",
    "NGINX_HSTS": "",
}
IMAGE_RATE_LIMITS = {
    "NGINX_SIGNUP_RATE": "5r/m",
    "NGINX_SIGNUP_BURST": "5",
    "NGINX_LOGIN_RATE": "5r/m",
    "NGINX_LOGIN_BURST": "3",
}
UPSTREAM_NAME = "web"
# A page nginx passes to the site that needs no database: what the tests ask
# for to see that nginx reaches gunicorn (nginx answers /healthz itself, 404).
PROXIED_PROBE = "/thanks/"
# Read by gunicorn itself or by docker/web/gunicorn.conf.py besides GUNICORN_*.
GUNICORN_VARIABLES = ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "PORT")

# The nginx.conf around the rendered template: the official image's
# nginx.conf (its own log format "main", keepalive, sendfile), with every path
# in the stack's directory. The tests run one worker and log at info; the
# benchmark (bench/stack.py) runs the image's own worker settings.
WRAPPER_CONF = """\
worker_processes {worker_processes};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log {error_log_level};

events {{
    worker_connections {worker_connections};
}}

http {{
    include {mime_types};
    default_type application/octet-stream;

    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log {prefix}/http-access.log main;

    sendfile on;
    keepalive_timeout 65;

    client_body_temp_path {prefix}/client_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;

    include {prefix}/conf.d/*.conf;
}}
"""

_SHELL_VARIABLE = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def render_template(text, variables):
    """Substitute like the image's ``envsubst "${A} ${B}"``: $NAME and ${NAME},
    for the names in VARIABLES only; everything else is left as it is."""

    def substitute(match):
        name = match.group(1) or match.group(2)
        return str(variables[name]) if name in variables else match.group(0)

    return _SHELL_VARIABLE.sub(substitute, text)


def nginx_hsts(environment):
    """NGINX_HSTS as the nginx image works it out at start: the image's own
    script, sourced with the site's DJANGO_* variables."""
    result = subprocess.run(
        ["/bin/sh", "-ec", '. "$0"; printf %s "$NGINX_HSTS"', str(HSTS_SCRIPT)],
        env={k: v for k, v in environment.items() if k.startswith("DJANGO_")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{HSTS_SCRIPT.name} failed:\n{result.stderr}")
    return result.stdout


def wait_for(condition, *, timeout, interval=0.1, message="condition"):
    """Poll CONDITION until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not met within {timeout} s")
        time.sleep(interval)


def _tail(path, lines=30):
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:])


def _stop(process, sig, timeout):
    """Signal PROCESS by its pid and wait; SIGKILL if it does not exit."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


def bare_environment(**overrides):
    """commands.site_environment() without the caller's gunicorn settings
    and SIGNUP_* variables either, plus OVERRIDES."""
    env = {
        name: value
        for name, value in _site_environment().items()
        if not name.startswith(("GUNICORN_", "SIGNUP_"))
        and name not in GUNICORN_VARIABLES
    }
    env.update({name: str(value) for name, value in overrides.items()})
    return env


def site_environment(**overrides):
    """The environment of a site process, with the test secret key."""
    return bare_environment(DJANGO_SECRET_KEY=TEST_SECRET_KEY, **overrides)


def gunicorn_command(*options):
    """gunicorn with the project's config, the site as the application."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(GUNICORN_CONFIG),
        *options,
        "signup_site.wsgi:application",
    ]


class LogFile:
    """Lines a child process writes to a file, read back while it runs."""

    def __init__(self, path):
        self.path = Path(path)

    def lines(self):
        try:
            return self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def wait_for_line(self, fragment, timeout=10):
        """The first line containing FRAGMENT, waiting for it to be written."""
        return wait_for(
            lambda: next((line for line in self.lines() if fragment in line), None),
            timeout=timeout,
            message=f"a line with {fragment!r} in {self.path.name}",
        )

    def matching(self, fragment):
        return [line for line in self.lines() if fragment in line]


class Gunicorn:
    """gunicorn -c docker/web/gunicorn.conf.py on 127.0.0.1, as a child process."""

    def __init__(self, workdir, env, *, port=None, name="gunicorn"):
        self.port = port or free_port()
        self.env = {
            "WEB_CONCURRENCY": "2",
            **env,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
        }
        self.access_log = LogFile(Path(workdir) / f"{name}.stdout")
        self.error_log = LogFile(Path(workdir) / f"{name}.stderr")
        self.process = None

    def start(self):
        with (
            self.access_log.path.open("ab") as stdout,
            self.error_log.path.open("ab") as stderr,
        ):
            self.process = subprocess.Popen(
                gunicorn_command(),
                env=self.env,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        return self

    def wait_ready(self, timeout=30):
        def healthy():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.process.returncode}:\n"
                    + _tail(self.error_log.path)
                )
            try:
                response = requests.get(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=2
                )
            except requests.ConnectionError:
                return False
            return response.status_code == 200

        wait_for(healthy, timeout=timeout, message="gunicorn answering /healthz")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=40):
        if self.process is None:
            return None
        return _stop(self.process, sig, timeout)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


class Nginx:
    """Debian's nginx in the foreground with the rendered template."""

    worker_processes = "1"
    worker_connections = 256
    error_log_level = "info"

    def __init__(self, workdir, variables, *, template_text=None):
        self.prefix = Path(workdir)
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.variables = {**TEMPLATE_DEFAULTS, **variables}
        self.port = int(self.variables["NGINX_PORT"])
        self.template_text = (
            TEMPLATE.read_text() if template_text is None else template_text
        )
        self.conf = self.prefix / "nginx.conf"
        self.rendered = self.prefix / "conf.d" / "default.conf"
        self.access_log = LogFile(self.prefix / "nginx.stdout")
        self.error_log = LogFile(self.prefix / "error.log")
        self.stderr = self.prefix / "nginx.stderr"
        self.process = None
        self.write_config()

    def write_config(self):
        self.rendered.parent.mkdir(exist_ok=True)
        self.rendered.write_text(render_template(self.template_text, self.variables))
        self.conf.write_text(
            WRAPPER_CONF.format(
                prefix=self.prefix,
                mime_types=MIME_TYPES,
                worker_processes=self.worker_processes,
                worker_connections=self.worker_connections,
                error_log_level=self.error_log_level,
            )
        )

    def base_command(self):
        return [str(NGINX_BINARY), "-p", f"{self.prefix}/", "-c", str(self.conf)]

    def test_config(self):
        """``nginx -t`` on the wrapper and rendered template."""
        return subprocess.run(
            [*self.base_command(), "-t"],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self):
        with (
            self.access_log.path.open("ab") as stdout,
            self.stderr.open("ab") as stderr,
        ):
            self.process = subprocess.Popen(
                [*self.base_command(), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        return self

    def wait_ready(self, timeout=15):
        def listening():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with {self.process.returncode}:\n"
                    + _tail(self.stderr)
                    + "\n"
                    + _tail(self.error_log.path)
                )
            with socket.socket() as sock:
                sock.settimeout(1)
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout=timeout, message="nginx listening")
        return self

    def stop(self, timeout=15):
        if self.process is None:
            return None
        # SIGTERM is nginx's fast shutdown; nothing here needs draining.
        return _stop(self.process, signal.SIGTERM, timeout)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"


class FakeDNS:
    """A DNS server on 127.0.0.1 (UDP) that answers A queries from RECORDS.

    A name mapped to None gets NXDOMAIN, like Docker's DNS for a service with
    no running container. Answers carry Docker's 600 s TTL. Every query is
    recorded as (monotonic time, name, type).
    """

    TTL = 600

    def __init__(self, records):
        self.records = dict(records)
        self.queries = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def queries_for(self, name, qtype=1):
        return [
            when for when, qname, kind in self.queries if (qname, kind) == (name, qtype)
        ]

    def _serve(self):
        while not self._stopping.is_set():
            try:
                data, peer = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(data)
            if reply:
                self._sock.sendto(reply, peer)

    def _answer(self, data):
        if len(data) < 17:
            return None
        labels, offset = [], 12
        while offset < len(data) and data[offset]:
            length = data[offset]
            labels.append(data[offset + 1 : offset + 1 + length].decode("ascii"))
            offset += 1 + length
        offset += 1
        if offset + 4 > len(data):
            return None
        qtype, _qclass = struct.unpack("!HH", data[offset : offset + 4])
        question = data[12 : offset + 4]
        name = ".".join(labels).lower()
        self.queries.append((time.monotonic(), name, qtype))

        answers = b""
        rcode = 0
        if name not in self.records or self.records[name] is None:
            rcode = 3  # NXDOMAIN
        elif qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, self.TTL, 4)
            answers += socket.inet_aton(self.records[name])
        recursion_desired = data[2] & 0x01
        flags = 0x8400 | (recursion_desired << 8) | 0x0080 | rcode
        header = data[:2] + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
        return header + question + answers

    def close(self):
        self._stopping.set()
        self._thread.join(timeout=5)
        self._sock.close()


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


def form_token(html):
    """The CSRF token in a page's form."""
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def make_workdir(prefix):
    """A temporary directory nginx's unprivileged workers can read."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class ServingStack:
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
        self._exit = contextlib.ExitStack()

    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        self.root = make_workdir("signup-serving-")
        self._exit.callback(shutil.rmtree, self.root, ignore_errors=True)
        self.static_root = self.root / "static"
        self.dns = FakeDNS({UPSTREAM_NAME: "127.0.0.1"})
        self._exit.callback(self.dns.close)
        self.database = self._exit.enter_context(shared_database(self.database_params))

        gunicorn_port = free_port()
        self.public_url = f"http://127.0.0.1:{gunicorn_port}"
        self.env = site_environment(
            **{
                "DJANGO_SETTINGS_MODULE": SITE_SETTINGS,
                "SIGNUP_TEST_STATIC_ROOT": self.static_root,
                "DJANGO_PUBLIC_URL": self.public_url,
                "DJANGO_ALLOWED_HOSTS": "localhost",
                **self.database,
                **self.extra_environment,
            }
        )
        for command in (
            ("bootstrap", "--timeout", "30"),
            ("collectstatic", "--no-input"),
        ):
            result = manage(*command, env=self.env)
            if result.returncode != 0:
                raise RuntimeError(
                    f"manage.py {command[0]} failed:\n{result.stdout}\n{result.stderr}"
                )

        self.gunicorn = Gunicorn(self.root, self.env, port=gunicorn_port)
        self._exit.callback(self.gunicorn.stop)
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
        self._exit.callback(nginx.stop)
        return nginx

    def stop(self):
        self._exit.close()

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

    def sign_up(self, name, email, *, nginx=None, pair=None, headers=None, **kwargs):
        """POST the form as a browser at http://localhost:<port> would: the
        CSRF cookie and token, Origin and Host with the port."""
        nginx = nginx or self.nginx
        token, cookie = pair or self.csrf_pair(nginx=nginx)
        return self.post(
            "/",
            nginx=nginx,
            data={"csrfmiddlewaretoken": token, "name": name, "email": email},
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
        session = requests.Session()
        session.headers["Host"] = self.browser_host
        login = session.get(self.nginx.url("/admin/login/"), timeout=10)
        response = session.post(
            self.nginx.url("/admin/login/?next=/admin/"),
            data={
                "csrfmiddlewaretoken": form_token(login.text),
                "username": username,
                "password": password,
                "next": "/admin/",
            },
            headers=self.origin_headers(),
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, response.text[:500]
        return session

    def origin_headers(self):
        return {"Origin": f"http://{self.browser_host}"}

    def connect(self):
        """A psycopg connection to the stack's database."""
        return psycopg.connect(
            host=self.database["POSTGRES_HOST"],
            port=self.database["POSTGRES_PORT"],
            user=self.database["POSTGRES_USER"],
            password=self.database["POSTGRES_PASSWORD"] or None,
            dbname=self.database["POSTGRES_DB"],
        )

    def signup_count(self):
        with self.connect() as conn:
            return conn.execute("SELECT count(*) FROM accounts_signup").fetchone()[0]

    def signups(self, email):
        """(name, email) rows stored for EMAIL, straight from the database."""
        with psycopg.connect(
            host=self.database["POSTGRES_HOST"],
            port=self.database["POSTGRES_PORT"],
            user=self.database["POSTGRES_USER"],
            password=self.database["POSTGRES_PASSWORD"] or None,
            dbname=self.database["POSTGRES_DB"],
        ) as conn:
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
