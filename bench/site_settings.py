"""The production settings with STATIC_ROOT in the benchmark's temporary
directory, so its collectstatic leaves the working tree alone."""

import os

from signup_site.settings import *  # noqa: F403

STATIC_ROOT = os.environ["SIGNUP_BENCH_STATIC_ROOT"]
