"""
The production settings (signup_site.settings) with STATIC_ROOT taken from
SIGNUP_BENCH_STATIC_ROOT, so the benchmark's collectstatic, and the manifest
gunicorn reads hashed names from, live in its temporary directory instead of
the working tree. Nothing else differs.
"""

import os

from signup_site.settings import *  # noqa: F403

STATIC_ROOT = os.environ["SIGNUP_BENCH_STATIC_ROOT"]
