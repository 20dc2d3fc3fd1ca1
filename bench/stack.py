"""
What a benchmark runs, on the loopback package's stack: a throwaway
PostgreSQL cluster, and for each target (the site, the ceiling app, or a
variant of either) gunicorn with ``docker/web/gunicorn.conf.py`` behind nginx
with the project's template, in the official image's worker settings.
"""

import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from loopback.browser import form_token
from loopback.dns import FakeDNS
from loopback.gunicorn import SITE_APP, Gunicorn
from loopback.nginx import UPSTREAM_NAME, Nginx
from loopback.postgres import SiteDatabase
from loopback.processes import (
    ProcessGroup,
    clean_environment,
    free_port,
    make_workdir,
    manage,
    tree_cpu_seconds,
    wait_for,
)

SITE_SETTINGS = "bench.site_settings"
APPS = {"site": SITE_APP, "ceiling": "bench.ceiling:application"}


@dataclass
class TargetSpec:
    """What one target runs. KIND is ``site`` or ``ceiling``; ENV is added to
    its processes' environment (WEB_CONCURRENCY, DJANGO_SETTINGS_MODULE...);
    TEMPLATE replaces the nginx template; ROOT is another copy of the project
    for gunicorn to run (a "before" tree); CONFIG another gunicorn config."""

    name: str
    kind: str
    env: dict = field(default_factory=dict)
    template: Path | None = None
    root: Path | None = None
    config: Path | None = None

    PATHS = ("template", "root", "config")

    @classmethod
    def parse(cls, text):
        """``NAME=KIND[,VAR=VALUE...][,template=PATH][,root=PATH][,config=PATH]``,
        or just ``KIND``."""
        head, *options = text.split(",")
        name, _, kind = head.partition("=")
        kind = kind or name
        if kind not in APPS:
            raise ValueError(f"{text!r}: the kind is site or ceiling, not {kind!r}")
        spec = cls(name=name, kind=kind)
        for option in options:
            key, equals, value = option.partition("=")
            if not equals:
                raise ValueError(f"{text!r}: {option!r} is not VAR=VALUE")
            if key in cls.PATHS:
                setattr(spec, key, Path(value).resolve())
            else:
                spec.env[key] = value
        return spec

    def describe(self):
        extras = [f"{key}={value}" for key, value in self.env.items()]
        extras += [
            f"{key}={getattr(self, key)}" for key in self.PATHS if getattr(self, key)
        ]
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

    def __init__(self, spec, stack, name=None):
        self.spec = spec
        self.name = name or spec.name
        workdir = stack.root / self.name
        workdir.mkdir(parents=True)
        workdir.chmod(0o755)
        self.nginx_port = free_port()
        self.env = {
            **stack.base_env,
            "DJANGO_PUBLIC_URL": f"http://localhost:{self.nginx_port}",
            **spec.env,
        }
        self.gunicorn = Gunicorn(
            workdir, self.env, app=APPS[spec.kind], root=spec.root, config=spec.config
        )
        self.nginx = Nginx(
            workdir / "nginx",
            {
                "NGINX_PORT": self.nginx_port,
                "NGINX_UPSTREAM": f"{UPSTREAM_NAME}:{self.gunicorn.port}",
                "NGINX_RESOLVER": stack.dns.address,
                "NGINX_STATIC_ROOT": stack.static_root,
            },
            template_text=spec.template.read_text() if spec.template else None,
            image_workers=True,
        )
        self.nginx_access_log = self.nginx.access_log.path
        self.host = f"localhost:{self.nginx_port}"  # what a browser sends
        self.url = f"http://127.0.0.1:{self.nginx_port}"

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
            f"http://127.0.0.1:{self.gunicorn.port}",
            self.host,
            self.gunicorn.access_log.path,
        )

    def stop(self):
        self.nginx.stop()
        self.gunicorn.stop()

    def nginx_cpu_seconds(self):
        return tree_cpu_seconds(self.nginx.process.pid)

    def get(self, path):
        return requests.get(
            self.url + path,
            headers={"Host": self.host},
            allow_redirects=False,
            timeout=30,
        )

    def csrf_pair(self):
        """(cookie, form token) of one GET of the form, as a browser keeps them."""
        response = self.get("/")
        response.raise_for_status()
        return response.cookies["csrftoken"], form_token(response.text)


class Stack(ProcessGroup):
    """The cluster, the DNS stand-in and the targets, stopped together."""

    def __init__(self, specs):
        super().__init__()
        self.specs = specs
        self.targets = []

    def _start(self):
        self.root = make_workdir("signup-bench-")
        self.callback(shutil.rmtree, self.root, ignore_errors=True)
        started = time.monotonic()
        self.database = SiteDatabase()
        self.callback(self.database.destroy)
        self.dns = FakeDNS({UPSTREAM_NAME: "127.0.0.1"})
        self.callback(self.dns.close)
        self.static_root = self.root / "static"
        self.secret_key = secrets.token_urlsafe(50)
        self.base_env = clean_environment(
            DJANGO_SECRET_KEY=self.secret_key,
            DJANGO_SETTINGS_MODULE=SITE_SETTINGS,
            SIGNUP_BENCH_STATIC_ROOT=self.static_root,
            **self.database.env,
        )
        manage("bootstrap", "--timeout", "30", env=self.base_env, check=True)
        manage("collectstatic", "--no-input", env=self.base_env, check=True)
        self.setup_seconds = time.monotonic() - started
        self.targets = [self.add_target(spec) for spec in self.specs]

    def add_target(self, spec, name=None):
        target = Target(spec, self, name=name)
        self.callback(target.stop)
        return target.start()
