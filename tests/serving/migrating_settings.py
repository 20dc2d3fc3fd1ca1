"""The serving tests' site settings plus an app whose one migration alters
the sign-up table: what `bootstrap` meets when a release adds a column."""

from loopback.site_settings import *  # noqa: F403
from loopback.site_settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.serving.migrating"]
