"""Child processes, their logs, their CPU time and memory, and the loopback
ports they listen on."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Variables of the caller's environment that would change what a site,
# gunicorn or nginx process does.
CONFIG_PREFIXES = (
    "DJANGO_",
    "POSTGRES_",
    "DATABASE_URL",
    "TEST_POSTGRES_",
    "SIGNUP_",
    "GUNICORN_",
    "NGINX_",
    "EMAIL_",
    "MAILER_",
    "LOOPBACK_",
)
CONFIG_NAMES = ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "PORT", "DEFAULT_FROM_EMAIL")


# The production settings with STATIC_ROOT from LOOPBACK_STATIC_ROOT, for a
# site whose collectstatic must leave the working tree alone.
SITE_SETTINGS = "loopback.site_settings"


def site_environment(**overrides):
    """os.environ without any site, gunicorn or nginx setting, with the
    production settings module, plus OVERRIDES."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(CONFIG_PREFIXES) and name not in CONFIG_NAMES
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["DJANGO_SETTINGS_MODULE"] = "signup_site.settings"
    env.update({name: str(value) for name, value in overrides.items()})
    return env


def manage(*args, env, timeout=120, check=False, **kwargs):
    """``python manage.py ARGS``; the CompletedProcess, or with CHECK an error
    carrying its output when it fails."""
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def free_port():
    """A TCP port that no socket on this host holds right now, on any address:
    nginx's template listens on all of them, and a port free on 127.0.0.1
    alone may be a connection's own port on a bridge's address."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 (bound a moment, never listening)
        return sock.getsockname()[1]


def make_workdir(prefix):
    """A temporary directory nginx's unprivileged workers can read."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


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


def stop_process(process, sig=signal.SIGTERM, timeout=30):
    """Signal PROCESS by its pid and wait; SIGKILL if it does not exit."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


class LogFile:
    """Lines a child process writes to a file, read back while it runs."""

    def __init__(self, path):
        self.path = Path(path)

    def lines(self):
        try:
            return self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def tail(self, count=30):
        return "\n".join(self.lines()[-count:]) or "(no output)"

    def wait_for_line(self, fragment, timeout=10):
        """The first line containing FRAGMENT, waiting for it to be written."""
        return wait_for(
            lambda: next((line for line in self.lines() if fragment in line), None),
            timeout=timeout,
            message=f"a line with {fragment!r} in {self.path.name}",
        )

    def matching(self, fragment):
        return [line for line in self.lines() if fragment in line]


def children(pid):
    """The pids of the living processes whose parent is PID."""
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid):
    """User + system CPU seconds of PID and all its descendants, living or
    exited and reaped."""
    try:
        process = psutil.Process(pid)
        tree = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    seconds = 0.0
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            # children_*: the descendants it has already reaped.
            times = member.cpu_times()
            seconds += times.user + times.system
            seconds += times.children_user + times.children_system
    return seconds


def rss_mib(pid):
    """PID's resident set size in MiB (None if it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return None


class PeakRss(threading.Thread):
    """PID's highest resident set size in MiB, sampled every INTERVAL seconds
    while the with block runs: psutil reads no peak (VmHWM) on Linux."""

    def __init__(self, pid, interval=0.01):
        super().__init__(daemon=True)
        self.pid, self.interval, self.mib = pid, interval, 0.0
        self._stopped = threading.Event()

    def _sample(self):
        self.mib = max(self.mib, rss_mib(self.pid) or 0.0)

    def run(self):
        self._sample()
        while not self._stopped.wait(self.interval):
            self._sample()
        self._sample()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self._stopped.set()
        self.join()


class ProcessGroup(contextlib.ExitStack):
    """What ``_start()`` starts (processes, directories), registered as
    callbacks and undone together in reverse order; a start that fails
    undoes what it had done. A context manager, or start() and stop()."""

    def _start(self):
        raise NotImplementedError

    def start(self):
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    __enter__ = start

    def stop(self):
        self.close()
