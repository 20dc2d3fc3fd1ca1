"""
The processes a benchmark runs, all on loopback and all stopped by their pid:
a throwaway PostgreSQL cluster, and for each target (the site, the ceiling
app, or a variant of either) gunicorn with ``docker/web/gunicorn.conf.py`` behind
an nginx with the project's template.

The nginx, template renderer, fake DNS and PostgreSQL cluster are the test
suite's (tests/support), so the benchmark serves exactly what the serving
tests check. Only the nginx.conf around the template differs: the official
image's (``worker_processes auto``, 1024 connections), not the tests' single
worker.
"""

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from tests.support.postgres import ThrowawayCluster, free_port
from tests.support.stack import (
    UPSTREAM_NAME,
    FakeDNS,
    Nginx,
    make_workdir,
    wait_for,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONFIG = PROJECT_ROOT / "docker" / "web" / "gunicorn.conf.py"
SITE_SETTINGS = "bench.site_settings"
SITE_APP = "signup_site.wsgi:application"
CEILING_APP = "bench.ceiling:application"
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
# Variables of the caller's environment that would change what is measured.
FOREIGN_PREFIXES = (
    "DJANGO_",
    "POSTGRES_",
    "DATABASE_URL",
    "GUNICORN_",
    "SIGNUP_",
    "NGINX_",
    "TEST_POSTGRES_",
)
FOREIGN_NAMES = ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "PORT")


def clean_environment(**overrides):
    """os.environ without any site, gunicorn or nginx setting, plus OVERRIDES."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(FOREIGN_PREFIXES) and name not in FOREIGN_NAMES
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update({name: str(value) for name, value in overrides.items()})
    return env


def manage(*args, env, timeout=300):
    """``python manage.py ARGS``; raises with its output when it fails."""
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def stop_process(process, sig=signal.SIGTERM, timeout=30):
    """Signal PROCESS by its pid and wait; SIGKILL if it does not exit."""
    if process is not None and process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def proc_status(pid, key):
    """A ``VmRSS``-style value of /proc/PID/status, in MiB (None if gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def cpu_seconds(pid, *, reaped_children=False):
    """User + system CPU seconds of process PID (and, with REAPED_CHILDREN,
    of its children that have exited and been waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14-17 of proc(5): utime, stime, cutime, cstime.
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid):
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def tree_cpu_seconds(pid):
    """CPU seconds of PID and all its descendants, living or reaped."""
    try:
        total = cpu_seconds(pid, reaped_children=True)
    except OSError:
        return 0.0
    for child in children(pid):
        total += tree_cpu_seconds(child)
    return total


class Database:
    """A throwaway PostgreSQL cluster with the site's role and database."""

    USER = "signup"
    NAME = "signup"

    def __init__(self):
        self.password = secrets.token_urlsafe(24)
        self.cluster = ThrowawayCluster()
        try:
            self.cluster.start()
            self.cluster.create_role_and_database(self.USER, self.password, self.NAME)
        except BaseException:
            self.cluster.destroy()
            raise

    @property
    def env(self):
        """The POSTGRES_* variables of the site (and the ceiling app)."""
        return {
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(self.cluster.port),
            "POSTGRES_USER": self.USER,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": self.NAME,
        }

    def connect(self, **kwargs):
        return psycopg.connect(
            host="127.0.0.1",
            port=self.cluster.port,
            user=self.USER,
            password=self.password,
            dbname=self.NAME,
            **kwargs,
        )

    def superuser_connect(self, **kwargs):
        return psycopg.connect(
            host="127.0.0.1",
            port=self.cluster.port,
            user=self.cluster.superuser,
            password=self.cluster.superuser_password,
            dbname=self.NAME,
            **kwargs,
        )

    def rows(self):
        with self.connect() as conn:
            return conn.execute("SELECT count(*) FROM accounts_signup").fetchone()[0]

    def version(self):
        with self.connect() as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def settings(self, *names):
        with self.connect() as conn:
            return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}

    def cpu_seconds(self):
        """CPU seconds of the whole cluster: postmaster, backends, helpers."""
        pidfile = self.cluster.datadir / "postmaster.pid"
        return tree_cpu_seconds(int(pidfile.read_text().split()[0]))

    def destroy(self):
        self.cluster.destroy()


class BenchNginx(Nginx):
    """The test suite's nginx with the official image's worker settings."""

    worker_processes = "auto"
    worker_connections = 1024
    error_log_level = "notice"


class Gunicorn:
    """gunicorn -c docker/web/gunicorn.conf.py APP on 127.0.0.1, a child process."""

    def __init__(self, workdir, env, app, *, name, root=None, config=None):
        self.port = free_port()
        self.app = app
        self.root = Path(root or PROJECT_ROOT)
        self.config = Path(config or self.root / "docker" / "web" / "gunicorn.conf.py")
        self.env = {**env, "GUNICORN_BIND": f"127.0.0.1:{self.port}"}
        self.access_log = Path(workdir) / f"{name}.stdout"
        self.error_log = Path(workdir) / f"{name}.stderr"
        self.process = None

    def start(self):
        with self.access_log.open("ab") as out, self.error_log.open("ab") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    str(self.config),
                    self.app,
                ],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        return self

    def check_running(self):
        if self.process.poll() is not None:
            tail = self.error_log.read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(
                f"gunicorn ({self.app}) exited with {self.process.returncode}:\n"
                + "\n".join(tail)
            )

    def workers(self):
        """The pids of the current worker processes."""
        return children(self.process.pid)

    def cpu_seconds(self):
        """CPU seconds used so far by the master and every worker, including
        the workers it has already replaced."""
        return tree_cpu_seconds(self.process.pid)

    def stop(self):
        stop_process(self.process, timeout=40)


@dataclass
class TargetSpec:
    """What one target of a benchmark runs.

    KIND is ``site`` or ``ceiling``; ENV is added to the processes'
    environment (e.g. WEB_CONCURRENCY, GUNICORN_CMD_ARGS, or
    DJANGO_SETTINGS_MODULE for a settings variant); TEMPLATE, if given, is an
    nginx template used instead of the project's; ROOT, a copy of the project
    whose code gunicorn runs (a "before" tree, to measure a change in the same
    run); CONFIG, a gunicorn config file instead of ROOT's.
    """

    name: str
    kind: str
    env: dict = field(default_factory=dict)
    template: Path | None = None
    root: Path | None = None
    config: Path | None = None

    @classmethod
    def parse(cls, text):
        """``NAME=KIND[,VAR=VALUE...][,template=PATH][,root=PATH][,config=PATH]``,
        or just ``KIND``."""
        head, *options = text.split(",")
        name, _, kind = head.partition("=")
        kind = kind or name
        if kind not in ("site", "ceiling"):
            raise ValueError(f"{text!r}: the kind is site or ceiling, not {kind!r}")
        spec = cls(name=name, kind=kind)
        for option in options:
            key, equals, value = option.partition("=")
            if not equals:
                raise ValueError(f"{text!r}: {option!r} is not VAR=VALUE")
            if key in ("template", "root", "config"):
                setattr(spec, key, Path(value).resolve())
            else:
                spec.env[key] = value
        return spec

    def describe(self):
        extras = [f"{key}={value}" for key, value in self.env.items()]
        for key in ("template", "root", "config"):
            if getattr(self, key):
                extras.append(f"{key}={getattr(self, key)}")
        return self.kind + (f" ({', '.join(extras)})" if extras else "")


@dataclass
class DirectTarget:
    """What owner.time_path needs of a target, pointing at gunicorn; its
    access log has the same request and status fields as nginx's."""

    url: str
    host: str
    nginx_access_log: Path


class Target:
    """One target: gunicorn serving its app behind its own nginx."""

    def __init__(self, spec, *, root, base_env, dns, static_root, name=None):
        self.spec = spec
        self.name = name or spec.name
        self.workdir = Path(root) / self.name
        self.workdir.mkdir(parents=True)
        self.workdir.chmod(0o755)
        self.nginx_port = free_port()
        self.env = {
            **base_env,
            "DJANGO_PUBLIC_URL": f"http://localhost:{self.nginx_port}",
            **spec.env,
        }
        app = SITE_APP if spec.kind == "site" else CEILING_APP
        self.gunicorn = Gunicorn(
            self.workdir,
            self.env,
            app,
            name="gunicorn",
            root=spec.root,
            config=spec.config,
        )
        template_text = spec.template.read_text() if spec.template else None
        self.nginx = BenchNginx(
            self.workdir / "nginx",
            {
                "NGINX_PORT": self.nginx_port,
                "NGINX_UPSTREAM": f"{UPSTREAM_NAME}:{self.gunicorn.port}",
                "NGINX_RESOLVER": dns.address,
                "NGINX_STATIC_ROOT": static_root,
            },
            template_text=template_text,
        )
        self.nginx_access_log = self.nginx.access_log.path

    @property
    def host(self):
        """The Host a browser sends: localhost with nginx's port."""
        return f"localhost:{self.nginx_port}"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.nginx_port}"

    def start(self):
        self.gunicorn.start()
        self.nginx.start().wait_ready()

        def healthy():
            self.gunicorn.check_running()
            try:
                probe = requests.get(self.direct().url + "/healthz", timeout=2)
                return probe.status_code == 200 and self.get("/thanks/").ok
            except requests.ConnectionError:
                return False

        wait_for(healthy, timeout=60, message=f"{self.name} answering /healthz")
        return self

    def direct(self):
        """This target as an orchestrator's probe reaches it: gunicorn itself,
        since nginx does not answer the probes to the public."""
        return DirectTarget(
            url=f"http://127.0.0.1:{self.gunicorn.port}",
            host=self.host,
            nginx_access_log=self.gunicorn.access_log,
        )

    def stop(self):
        self.nginx.stop()
        self.gunicorn.stop()

    def nginx_cpu_seconds(self):
        return tree_cpu_seconds(self.nginx.process.pid)

    def get(self, path, **kwargs):
        headers = {"Host": self.host, **kwargs.pop("headers", {})}
        return requests.get(
            self.url + path,
            headers=headers,
            allow_redirects=False,
            timeout=kwargs.pop("timeout", 30),
            **kwargs,
        )

    def csrf_pair(self):
        """(cookie, form token) of one GET of the form, as a browser keeps them."""
        response = self.get("/")
        response.raise_for_status()
        return response.cookies["csrftoken"], CSRF_FIELD.search(response.text).group(1)


class Stack:
    """The cluster, the fake DNS and the targets, stopped together."""

    def __init__(self, specs):
        self.specs = specs
        self._exit = contextlib.ExitStack()
        self.targets = []

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self._exit.close()

    def _start(self):
        self.root = make_workdir("signup-bench-")
        self._exit.callback(shutil.rmtree, self.root, ignore_errors=True)
        started = time.monotonic()
        self.database = Database()
        self._exit.callback(self.database.destroy)
        self.dns = FakeDNS({UPSTREAM_NAME: "127.0.0.1"})
        self._exit.callback(self.dns.close)
        self.static_root = self.root / "static"
        self.secret_key = secrets.token_urlsafe(50)
        self.base_env = clean_environment(
            DJANGO_SECRET_KEY=self.secret_key,
            DJANGO_SETTINGS_MODULE=SITE_SETTINGS,
            SIGNUP_BENCH_STATIC_ROOT=self.static_root,
            **self.database.env,
        )
        manage("bootstrap", "--timeout", "30", env=self.base_env)
        manage("collectstatic", "--no-input", env=self.base_env)
        self.setup_seconds = time.monotonic() - started
        for spec in self.specs:
            self.targets.append(self.add_target(spec))

    def add_target(self, spec, name=None):
        target = Target(
            spec,
            root=self.root,
            base_env=self.base_env,
            dns=self.dns,
            static_root=self.static_root,
            name=name,
        )
        self._exit.callback(target.stop)
        return target.start()
