"""Child processes, their logs and their CPU time, and the loopback ports
they listen on."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
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
        return [
            int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def proc_status(pid, key):
    """A ``VmRSS``-style value of /proc/PID/status, in MiB (None if gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def tree_cpu_seconds(pid):
    """User + system CPU seconds of PID and all its descendants, living or
    exited and reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14-17 of proc(5): utime, stime, cutime, cstime.
    ticks = sum(int(value) for value in fields[11:15])
    own = ticks / os.sysconf("SC_CLK_TCK")
    return own + sum(tree_cpu_seconds(child) for child in children(pid))


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
