"""The site with sessions, users and messages for /admin/ only."""

from bench.site_settings import *  # noqa: F403
from bench.site_settings import MIDDLEWARE

ADMIN_ONLY = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)
MIDDLEWARE = [
    "bench.variants.middleware.AdminSessionMiddleware"
    if name == ADMIN_ONLY[0]
    else name
    for name in MIDDLEWARE
    if name not in ADMIN_ONLY[1:]
]
