"""Both proposals: admin-only sessions and the lean form."""

from bench.variants.admin_sessions_settings import *  # noqa: F403
from bench.variants.admin_sessions_settings import MIDDLEWARE  # noqa: F401
from bench.variants.lean_form_settings import ROOT_URLCONF, TEMPLATES  # noqa: F401
