"""What a benchmark runs on loopback: a throwaway PostgreSQL cluster and, per
target, gunicorn with the project's config behind nginx with its template."""

import contextlib
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import requests

from bench.mail import SENDER, SmtpSink
from loopback.browser import form_token, signup_token
from loopback.dns import FakeDNS
from loopback.gunicorn import SITE_APP, Gunicorn
from loopback.nginx import UPSTREAM_NAME, Nginx
from loopback.postgres import SiteDatabase
from loopback.processes import (
    SITE_SETTINGS,
    ProcessGroup,
    free_port,
    make_workdir,
    manage,
    site_environment,
)
from signup_site.configuration import BOOLEANS, DEFAULT_MIN_FILL

APPS = {"site": SITE_APP, "ceiling": "bench.ceiling:application"}


@dataclass
class TargetSpec:
    """A target as ``--target`` gives it: ENV extends its environment; TEMPLATE,
    ROOT and CONFIG replace the nginx template, project tree and gunicorn config."""

    name: str
    kind: str
    description: str = ""
    env: dict = field(default_factory=dict)
    template: Path | None = None
    root: Path | None = None
    config: Path | None = None

    PATHS = ("template", "root", "config")

    @property
    def confirming(self):
        """Whether the target runs the site with double opt-in on."""
        word = self.env.get("SIGNUP_DOUBLE_OPT_IN", "").lower()
        return self.kind == "site" and BOOLEANS.get(word, False)

    @classmethod
    def parse(cls, text):
        """``[NAME=]KIND[,VAR=VALUE...][,template=...][,root=...][,config=...]``."""
        head, *options = text.split(",")
        name, _, kind = head.partition("=")
        kind = kind or name
        if kind not in APPS:
            raise ValueError(f"{text!r}: the kind is site or ceiling, not {kind!r}")
        spec = cls(name, kind, kind + (f" ({', '.join(options)})" if options else ""))
        for option in options:
            key, equals, value = option.partition("=")
            if not equals:
                raise ValueError(f"{text!r}: {option!r} is not VAR=VALUE")
            if key in cls.PATHS:
                setattr(spec, key, Path(value).resolve())
            else:
                spec.env[key] = value
        return spec


def collect_static(root, env, static_root):
    """collectstatic of the tree ROOT, whose templates may name other files,
    into STATIC_ROOT; ENV gains the settings that serve them from there (in a
    tree from before loopback/site_settings.py, the benchmark's own)."""
    if (Path(root) / "loopback" / "site_settings.py").exists():
        env |= {"DJANGO_SETTINGS_MODULE": SITE_SETTINGS}
        env |= {"LOOPBACK_STATIC_ROOT": str(static_root)}
    else:
        env |= {"DJANGO_SETTINGS_MODULE": "bench.site_settings"}
        env |= {"SIGNUP_BENCH_STATIC_ROOT": str(static_root)}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input"],
        env=env,
        cwd=root,
        capture_output=True,
        check=True,
    )


class Target:
    """gunicorn serving a target's app behind its own nginx, reached at URL as a
    browser at http://HOST."""

    def __init__(self, spec, stack):
        self.spec = spec
        self.name = spec.name
        workdir = stack.root / self.name
        workdir.mkdir()
        workdir.chmod(0o755)
        port = free_port()
        self.host, self.url = f"localhost:{port}", f"http://127.0.0.1:{port}"
        self.env = stack.base_env | {"DJANGO_PUBLIC_URL": f"http://{self.host}"}
        if spec.confirming:
            # Double opt-in needs mail configured: the stack's loopback mail
            # server, unless the target names its own.
            self.env |= {"EMAIL_URL": stack.smtp.url, "DEFAULT_FROM_EMAIL": SENDER}
        self.env |= spec.env
        static_root = stack.static_root
        if spec.root:
            static_root = workdir / "static"
            collect_static(spec.root, self.env, static_root)
        self.gunicorn = Gunicorn(
            workdir, self.env, app=APPS[spec.kind], root=spec.root, config=spec.config
        )
        self.nginx = Nginx(
            workdir / "nginx",
            {
                "NGINX_PORT": port,
                "NGINX_UPSTREAM": f"{UPSTREAM_NAME}:{self.gunicorn.port}",
                "NGINX_RESOLVER": stack.dns.address,
                "NGINX_STATIC_ROOT": static_root,
            },
            template_text=spec.template.read_text() if spec.template else None,
            image_workers=True,
        )
        self.access_log = self.nginx.access_log.path
        self.form_token = None

    def start(self):
        self.gunicorn.start().wait_ready(timeout=60)
        self.nginx.start().wait_ready()
        self.get("/thanks/").raise_for_status()
        return self

    def stop(self):
        self.nginx.stop()
        self.gunicorn.stop()

    def get(self, path):
        return requests.get(
            self.url + path,
            headers={"Host": self.host},
            allow_redirects=False,
            timeout=30,
        )

    def signup_args(self):
        """signup.lua's COOKIE TOKEN FORM_TOKEN TAG: one GET's CSRF pair, as a
        browser keeps it; the form token of the target's first page, used
        once it is older than the minimum fill time, so that every POST passes
        the signature and time checks (accounts.bots); a new tag, so that no
        address repeats across runs."""
        page = self.get("/")
        page.raise_for_status()
        if self.form_token is None:
            self.form_token = signup_token(page.text)
            minimum = self.env.get("SIGNUP_MIN_FILL_SECONDS") or DEFAULT_MIN_FILL
            time.sleep(float(minimum) + 0.1 if self.form_token else 0)
        cookie, token = page.cookies["csrftoken"], form_token(page.text)
        return cookie, token, quote(self.form_token, safe=""), uuid4().hex[:12]


class Stack(ProcessGroup):
    """The cluster, the DNS stand-in and the targets, stopped together."""

    def __init__(self, specs):
        super().__init__()
        self.specs = specs

    def _start(self):
        self.root = make_workdir("signup-bench-")
        self.callback(shutil.rmtree, self.root, ignore_errors=True)
        self.database = SiteDatabase()
        self.callback(self.database.destroy)
        self.dns = FakeDNS({UPSTREAM_NAME: "127.0.0.1"})
        self.callback(self.dns.close)
        self.static_root = self.root / "static"
        self.secret_key = secrets.token_urlsafe(50)
        self.base_env = site_environment(
            DJANGO_SECRET_KEY=self.secret_key,
            DJANGO_SETTINGS_MODULE=SITE_SETTINGS,
            LOOPBACK_STATIC_ROOT=self.static_root,
            **self.database.env,
        )
        manage("bootstrap", "--timeout", "30", env=self.base_env, check=True)
        manage("collectstatic", "--no-input", env=self.base_env, check=True)
        self.smtp = None
        if any(spec.confirming for spec in self.specs):
            self.smtp = SmtpSink(self.root).start()
            self.callback(self.smtp.stop)
        self.targets = [self.add_target(spec) for spec in self.specs]

    def add_target(self, spec):
        target = Target(spec, self)
        self.callback(target.stop)
        return target.start()

    @contextlib.contextmanager
    def one_worker(self, spec, name):
        """A target like SPEC with one worker that is never replaced, so one
        process serves everything sent to it; stopped when the block ends."""
        env = {**spec.env, "WEB_CONCURRENCY": "1", "GUNICORN_MAX_REQUESTS": "0"}
        target = Target(replace(spec, name=name, env=env), self)
        try:
            yield target.start()
        finally:
            target.stop()
