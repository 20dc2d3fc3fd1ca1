# gunicorn settings for the sign-up site, behind nginx in a container:
#
#   gunicorn -c docker/web/gunicorn.conf.py [signup_site.wsgi:application]
#
# from the project's root (the image's /app). Each variable it reads, with its
# default and meaning, is in docs/configuration.md; the comments here say why.
# It reads them through signup_site.configuration, by the same rules as the
# site's own. Anything else goes in GUNICORN_CMD_ARGS, which gunicorn applies
# after this file (then the command line wins over both).

import os
import sys

from signup_site.configuration import ConfigurationError, EnvironmentReader, load

_env = EnvironmentReader(os.environ)

# Every interface of the container: Compose publishes no port for web, so
# only containers on its network (nginx) can connect.
bind = _env.list("GUNICORN_BIND", default=["0.0.0.0:8000"])

# An explicit count, because gunicorn's CPU count is the host's, not the
# container's limit. (gunicorn itself reads WEB_CONCURRENCY first and stops
# with a traceback if it is not a number at all.) Sync workers, one request
# each: nginx buffers requests and responses, so slow clients never hold one.
workers = _env.integer("WEB_CONCURRENCY", 3, minimum=1)
worker_class = "sync"
# Longer than any database wait the site allows.
timeout = _env.integer("GUNICORN_TIMEOUT", 30, minimum=1)
# As long as a request may run; the container's stop grace period must exceed it.
graceful_timeout = _env.integer("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=0)
# Ignored by sync workers; nginx opens a connection per request anyway.
keepalive = _env.integer("GUNICORN_KEEPALIVE", 5, minimum=1)
# Replacing workers contains slow leaks (how a worker's memory grows with the
# requests it serves: docs/performance.md), but not often: a new worker's
# first requests are slower while it warms up.
max_requests = _env.integer("GUNICORN_MAX_REQUESTS", 10000, minimum=0)
max_requests_jitter = _env.integer("GUNICORN_MAX_REQUESTS_JITTER", 1000, minimum=0)

# The heartbeat file is touched constantly; on tmpfs that never waits for a
# disk (Docker mounts /dev/shm as tmpfs). gunicorn makes it with mkstemp and
# unlinks it at once, so a shared directory is safe.
_SHM = "/dev/shm"  # noqa: S108
worker_tmp_dir = _env.string(
    "GUNICORN_WORKER_TMP_DIR", _SHM if os.path.isdir(_SHM) else None
)
# Only nginx's own X-Forwarded-Proto could switch wsgi.url_scheme to https,
# and only from these peers. The default trusts loopback alone: in Compose
# nginx is another container, so gunicorn ignores the header there and Django
# decides instead (SECURE_PROXY_SSL_HEADER, set only for an https public URL,
# where nginx overwrites the header on every request). "*" would also let any
# container on the network set SCRIPT_NAME through gunicorn's forwarder
# headers; nothing here needs that.
forwarded_allow_ips = _env.string("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
# gunicornc's control socket (gunicorn 25.1+) is off unless asked for: by
# default it goes to $HOME/.gunicorn/gunicorn.ctl, a path every gunicorn of
# the same user shares, and nothing in this deployment uses it.
if _control_socket := _env.string("GUNICORN_CONTROL_SOCKET"):
    control_socket = _control_socket
else:
    control_socket_disable = True
# The default application, so the container command can leave it out.
wsgi_app = "signup_site.wsgi:application"

# Logging: both to the container's output. REMOTE_ADDR is nginx, so the client
# is the X-Forwarded-For nginx sets; rid is nginx's request id, rt seconds.
accesslog = "-"
errorlog = "-"
loglevel = _env.choice(
    "GUNICORN_LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")
)
access_log_format = (
    '%({x-forwarded-for}i)s %(t)s "%(r)s" %(s)s %(b)s rt=%(L)s '
    'rid=%({x-request-id}i)s peer=%(h)s pid=%(p)s "%(f)s" "%(a)s"'
)

# Every problem is reported here, at once, before gunicorn loads the site or
# binds anything: the site's own configuration too, which Django would only
# read while loading the application, and stop with a traceback.
if _env.problems:
    sys.stderr.write(
        "gunicorn is not configured correctly:\n"
        + "".join(f"  - {problem}\n" for problem in _env.problems)
    )
try:
    load()
except ConfigurationError as exc:
    sys.exit(str(exc))
if _env.problems:
    sys.exit(1)

# Load the site in the master, once, before any worker is forked: a new
# worker (max_requests replaces each now and then) starts in milliseconds
# instead of importing Django and the site again. Nothing connects to the
# database at import time, so no connection is shared between workers.
preload_app = True


def worker_exit(server, worker):
    """Store the refused sign-ups a worker counted since its last flush
    (accounts.bots), if the worker's app counts any."""
    bots = sys.modules.get("accounts.bots")
    if bots is not None:
        bots.tally.flush()
