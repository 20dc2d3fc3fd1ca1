"""The site with the form's fields worked out in the view (bench/variants/views.py
and templates/accounts/signup.html)."""

from bench.site_settings import *  # noqa: F403
from bench.site_settings import TEMPLATES
from bench.variants.base_settings import TEMPLATES_DIR

ROOT_URLCONF = "bench.variants.urls"
TEMPLATES = [{**TEMPLATES[0], "DIRS": [TEMPLATES_DIR, *TEMPLATES[0]["DIRS"]]}]
