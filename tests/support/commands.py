"""Run manage.py in a child process with the production settings module."""

import shutil
import subprocess
import sys

# Re-exported: the tests' manage.py runner is the loopback package's.
from loopback.processes import PROJECT_ROOT as PROJECT_ROOT
from loopback.processes import manage as manage
from loopback.processes import site_environment as site_environment

TEST_SECRET_KEY = "child-process-test-key-" + "k" * 40
# The site owner the in-process admin tests make (tests/conftest.py).
OWNER_USERNAME = "owner"
OWNER_PASSWORD = "a long admin passphrase"


def start_manage(*args, env, **streams):
    """Start ``python manage.py ARGS`` without waiting; return the Popen. Its
    output goes to pipes, as text, unless STREAMS say otherwise."""
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), *args],
        env=env,
        cwd=PROJECT_ROOT,
        text=True,
        **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **streams},
    )


def copy_as_cloned(source, destination):
    """Copy what a clone holds below SOURCE (tracked files and new ones git
    does not ignore: no .env, no .venv, no secret files) to DESTINATION."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (source / name).is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target)
    return destination
