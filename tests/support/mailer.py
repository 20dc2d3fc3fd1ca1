"""`manage.py deliver_mail`, the mailer, as a real child process: its log in
a file, its heartbeat in its own file, stopped by its pid."""

import re
import signal
import subprocess
import sys
from pathlib import Path

from loopback.processes import PROJECT_ROOT, LogFile, stop_process, wait_for

# accounts.outbox's lines, which name the outbox row, never the address.
SENT = re.compile(r"Sent mail (\d+) \(\w+, attempt (\d+)\)")
STOPPED = re.compile(r"Mailer stopped after sending (\d+) mail")


class Mailer:
    """One `deliver_mail` process with ENV (the site's environment) in
    WORKDIR; start() it, then stop() (SIGTERM) or kill() (SIGKILL) it."""

    def __init__(self, workdir, env, *, name="mailer"):
        self.name = name
        self.log = LogFile(Path(workdir) / f"{name}.log")
        self.heartbeat = Path(workdir) / f"{name}.heartbeat"
        # Not the default /tmp/mailer-heartbeat, which other mailers share.
        self.env = {**env, "MAILER_HEARTBEAT_FILE": str(self.heartbeat)}
        self.process = None

    def start(self, *args):
        with self.log.path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(PROJECT_ROOT / "manage.py"),
                    "deliver_mail",
                    *args,
                ],
                env=self.env,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self):
        return self.process.pid

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout=30):
        """Until it has found the queue and is about to send."""

        def ready():
            if not self.running:
                raise RuntimeError(f"{self.name} exited:\n{self.log.tail()}")
            return self.log.matching("Mailer sending through")

        wait_for(ready, timeout=timeout, message=f"{self.name} ready")
        return self

    def stop(self, timeout=30):
        """SIGTERM by pid, then wait (SIGKILL after TIMEOUT); the exit code."""
        return stop_process(self.process, signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL by pid: no chance to finish anything."""
        return stop_process(self.process, signal.SIGKILL, timeout=10)

    def sent(self):
        """The outbox rows it logged as sent, in order."""
        return [
            int(m.group(1)) for line in self.log.lines() if (m := SENT.search(line))
        ]

    def lines(self, fragment):
        return self.log.matching(fragment)
