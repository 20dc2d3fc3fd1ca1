"""WSGI entry point: gunicorn serves ``signup_site.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

from signup_site.postgresql.base import bound_waits

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signup_site.settings")
# A request never waits for a hung database for long; management commands,
# which do not come through here, may (a migration can take minutes).
bound_waits()

application = get_wsgi_application()
