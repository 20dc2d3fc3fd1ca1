"""
Debian's nginx in the foreground with the project's template, rendered by
the real ``envsubst`` as the official image's entrypoint renders it, inside
the official image's nginx.conf with every path in the stack's directory.
"""

import signal
import socket
import subprocess
from pathlib import Path

from loopback.processes import PROJECT_ROOT, LogFile, stop_process, wait_for

NGINX_BINARY = Path("/usr/sbin/nginx")
MIME_TYPES = Path("/etc/nginx/mime.types")
TEMPLATE = PROJECT_ROOT / "nginx" / "default.conf.template"
HSTS_SCRIPT = PROJECT_ROOT / "nginx" / "hsts.envsh"
UPSTREAM_NAME = "web"

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
# The template's other variables on loopback. The image trusts 127.0.0.1,
# the nginx container's own loopback, where no client is; here the clients
# are on 127.0.0.1, so an address none of them uses stands in for it. Rate
# limits are high enough for many posts from one address; the rate-limit
# tests start an nginx with the image's numbers.
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

# The official image's nginx.conf (its log format "main", keepalive,
# sendfile) with every path under the prefix.
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


def render_template(text, variables):
    """TEXT with VARIABLES substituted as the image's
    20-envsubst-on-templates.sh does: ``envsubst "${A} ${B} ..."`` with every
    defined variable listed, so any other ``$name`` is left as it is."""
    variables = {name: str(value) for name, value in variables.items()}
    return subprocess.run(
        ["envsubst", " ".join(f"${{{name}}}" for name in variables)],
        input=text,
        env=variables,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


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


class Nginx:
    """nginx with the rendered template; one worker by default, or the
    official image's ``worker_processes auto`` and 1024 connections."""

    def __init__(self, workdir, variables, *, template_text=None, image_workers=False):
        self.prefix = Path(workdir)
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.variables = {**TEMPLATE_DEFAULTS, **variables}
        self.port = int(self.variables["NGINX_PORT"])
        self.template_text = (
            TEMPLATE.read_text() if template_text is None else template_text
        )
        self.workers = ("auto", 1024, "notice") if image_workers else ("1", 256, "info")
        self.conf = self.prefix / "nginx.conf"
        self.rendered = self.prefix / "conf.d" / "default.conf"
        self.access_log = LogFile(self.prefix / "nginx.stdout")
        self.error_log = LogFile(self.prefix / "error.log")
        self.stderr = LogFile(self.prefix / "nginx.stderr")
        self.process = None
        self.write_config()

    def write_config(self):
        self.rendered.parent.mkdir(exist_ok=True)
        self.rendered.write_text(render_template(self.template_text, self.variables))
        processes, connections, level = self.workers
        self.conf.write_text(
            WRAPPER_CONF.format(
                prefix=self.prefix,
                mime_types=MIME_TYPES,
                worker_processes=processes,
                worker_connections=connections,
                error_log_level=level,
            )
        )

    def base_command(self):
        return [str(NGINX_BINARY), "-p", f"{self.prefix}/", "-c", str(self.conf)]

    def test_config(self):
        """``nginx -t`` on the wrapper and rendered template."""
        return subprocess.run(
            [*self.base_command(), "-t"], capture_output=True, text=True, timeout=30
        )

    def start(self):
        with (
            self.access_log.path.open("ab") as stdout,
            self.stderr.path.open("ab") as stderr,
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
                    f"{self.stderr.tail()}\n{self.error_log.tail()}"
                )
            with socket.socket() as sock:
                sock.settimeout(1)
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout=timeout, message="nginx listening")
        return self

    def stop(self, timeout=15):
        # SIGTERM is nginx's fast shutdown; nothing here needs draining.
        return stop_process(self.process, signal.SIGTERM, timeout)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"
