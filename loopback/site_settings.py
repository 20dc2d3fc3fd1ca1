"""
The production settings (signup_site.settings) with STATIC_ROOT taken from
LOOPBACK_STATIC_ROOT, so that collectstatic, and the manifest gunicorn reads
hashed names from, live in the serving tests' or the benchmark's temporary
directory instead of the working tree. Nothing else differs.
"""

import os

from signup_site.settings import *  # noqa: F403

STATIC_ROOT = os.environ["LOOPBACK_STATIC_ROOT"]
