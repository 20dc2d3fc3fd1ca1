"""Exit 0 if the mailer (manage.py deliver_mail) is alive: its heartbeat file,
MAILER_HEARTBEAT_FILE (default /tmp/mailer-heartbeat), was touched recently.

The worker touches it at least every 5 s while idle; sending one mail can hold
it for a few SMTP timeouts (EMAIL_TIMEOUT, default 10 s), so "recently" is 60 s
or six timeouts, whichever is longer. Used by Compose's and Swarm's
healthchecks and by the Kubernetes probes; standard library only, so it
starts fast.
"""

import os
import sys
import time

# The worker's default; only read here.
path = os.environ.get("MAILER_HEARTBEAT_FILE") or "/tmp/mailer-heartbeat"  # noqa: S108
limit = max(60.0, 6 * float(os.environ.get("EMAIL_TIMEOUT") or 10))
try:
    age = time.time() - os.stat(path).st_mtime
except OSError as error:
    sys.exit(f"no heartbeat: {error}")
if age > limit:
    sys.exit(f"heartbeat {age:.0f} s old (limit {limit:.0f} s): {path}")
