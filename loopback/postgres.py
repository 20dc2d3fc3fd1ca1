"""
Throwaway PostgreSQL clusters, for the benchmark and for tests that need
what the machine's shared server cannot give: password authentication, a
server that starts late, or one that stops. Built from the PostgreSQL
binaries on the machine; the server refuses to run as root, so as root it
runs as the ``postgres`` user (which fixture libraries such as
pytest-postgresql do not do).
"""

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from loopback.processes import children, free_port, tree_cpu_seconds


def postgres_bindir():
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries (initdb) are not installed")


class ThrowawayCluster:
    """A private PostgreSQL server on 127.0.0.1 with scram password auth."""

    def __init__(self, superuser_password="throwaway-superuser"):
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.superuser = "postgres"
        self.superuser_password = superuser_password
        self.run_as = None
        if os.geteuid() == 0:
            self.run_as = pwd.getpwnam("postgres")
        self.root = Path(tempfile.mkdtemp(prefix="signup-pg-"))
        self.datadir = self.root / "data"
        self.socketdir = self.root / "socket"
        self.logfile = self.root / "server.log"
        self.socketdir.mkdir()
        if self.run_as:
            for path in (self.root, self.socketdir):
                os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
        self._initdb()

    def _run(self, *args, **kwargs):
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=120, **kwargs
        )

    def _initdb(self):
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        if self.run_as:
            os.chown(pwfile, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            self.superuser,
            "--pwfile",
            str(pwfile),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
        )
        pwfile.unlink()

    def start(self):
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-o",
            f"-p {self.port} -k {self.socketdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=50",
            "start",
        )

    def stop(self):
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def postmaster_pid(self):
        return int((self.datadir / "postmaster.pid").read_text().split()[0])

    @contextlib.contextmanager
    def frozen(self):
        """Every process of the server stopped (SIGSTOP), as a paused
        container is: its kernel still accepts connections and acknowledges
        what is sent, but nothing answers. SIGCONT on leaving."""
        postmaster = self.postmaster_pid()
        stopped = []
        try:
            # The postmaster first: stopped, it forks no new child.
            os.kill(postmaster, signal.SIGSTOP)
            stopped.append(postmaster)
            for pid in children(postmaster):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            yield stopped
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def is_running(self):
        return (self.datadir / "postmaster.pid").exists()

    def destroy(self):
        if self.is_running():
            try:
                self.stop()
            except subprocess.SubprocessError:
                self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql, database="postgres"):
        """Run SQL as the superuser; return psql's unaligned, tuples-only output."""
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-A",
                "-t",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PGPASSWORD": self.superuser_password},
        )
        return result.stdout.strip()

    def create_role_and_database(self, user, password, database):
        # Dollar quoting keeps any password literal, quotes and all.
        tag = "$pw_9f2$"
        self.psql(f'CREATE ROLE "{user}" LOGIN PASSWORD {tag}{password}{tag}')
        self.psql(f'CREATE DATABASE "{database}" OWNER "{user}"')


class SiteDatabase:
    """A throwaway cluster with the site's role and database, reached over
    TCP with a password as the site reaches its own."""

    USER = NAME = "signup"

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
        """The POSTGRES_* variables that point the site at it."""
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

    def query(self, sql):
        """The first column of SQL's first row."""
        with self.connect() as conn:
            return conn.execute(sql).fetchone()[0]

    def rows(self):
        return self.query("SELECT count(*) FROM accounts_signup")

    def cpu_seconds(self):
        """CPU seconds of the whole cluster: postmaster, backends, helpers."""
        return tree_cpu_seconds(self.cluster.postmaster_pid())

    def destroy(self):
        self.cluster.destroy()
