"""gunicorn with the project's config (docker/web/gunicorn.conf.py) on
127.0.0.1, as a child process."""

import signal
import subprocess
import sys
from pathlib import Path

import requests

from loopback.processes import (
    PROJECT_ROOT,
    LogFile,
    children,
    free_port,
    stop_process,
    tree_cpu_seconds,
    wait_for,
)

SITE_APP = "signup_site.wsgi:application"


def gunicorn_command(*options, root=PROJECT_ROOT, config=None, app=SITE_APP):
    """gunicorn with ROOT's config (or CONFIG), APP as the application."""
    if config is None:
        config = Path(root) / "docker" / "web" / "gunicorn.conf.py"
        if not config.exists():  # a tree from before docker/ was grouped
            config = Path(root) / "docker" / "gunicorn.conf.py"
    return [sys.executable, "-m", "gunicorn", "-c", str(config), *options, app]


class Gunicorn:
    """gunicorn -c docker/web/gunicorn.conf.py APP. ROOT is the copy of the
    project whose code it runs (an earlier commit's worktree, say); CONFIG
    another config file than ROOT's."""

    def __init__(
        self,
        workdir,
        env,
        *,
        port=None,
        name="gunicorn",
        app=SITE_APP,
        root=None,
        config=None,
    ):
        self.port = port or free_port()
        self.root = Path(root or PROJECT_ROOT)
        self.command = gunicorn_command(root=self.root, config=config, app=app)
        self.env = {**env, "GUNICORN_BIND": f"127.0.0.1:{self.port}"}
        self.access_log = LogFile(Path(workdir) / f"{name}.stdout")
        self.error_log = LogFile(Path(workdir) / f"{name}.stderr")
        self.process = None

    def start(self):
        with (
            self.access_log.path.open("ab") as stdout,
            self.error_log.path.open("ab") as stderr,
        ):
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        return self

    def check_running(self):
        if self.process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {self.process.returncode}:\n"
                + self.error_log.tail()
            )

    def wait_ready(self, timeout=30):
        def healthy():
            self.check_running()
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
        return stop_process(self.process, sig, timeout)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def workers(self):
        """The pids of the current worker processes."""
        return children(self.process.pid)

    def cpu_seconds(self):
        """CPU seconds of the master and every worker, including the workers
        it has already replaced."""
        return tree_cpu_seconds(self.process.pid)
