"""
Settings for a child process that serves Django's debug pages: the site's
settings, with a URLconf (this module too) whose one view raises.
"""

from django.urls import path

from signup_site.settings import *  # noqa: F403

ROOT_URLCONF = __name__


def raising_view(request):
    raise RuntimeError("a view that fails")


urlpatterns = [path("raise/", raising_view)]
