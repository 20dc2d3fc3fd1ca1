"""
Sessions, logged-in users and messages, for the admin's URLs only.

The public pages (the form, the thank-you page, the error pages) use none of
the three, and Django's middleware builds them for every request: a session
store, a lazy user, a message storage, and on the way out a look at whether
any of them changed. Each class here is Django's own, skipped outside the
admin; they stand where Django's stand in MIDDLEWARE, so the admin's system
checks still find them. A public view therefore has no request.session or
request.user: one that needs them lives under the admin, or uses Django's
classes instead of these (docs/architecture.md).
"""

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware


class AdminOnlyMixin:
    def __init__(self, get_response):
        super().__init__(get_response)
        # path_info never holds the script prefix, however the site is mounted.
        self.admin_path = "/" + settings.ADMIN_URL

    def __call__(self, request):
        if request.path_info.startswith(self.admin_path):
            return super().__call__(request)
        return self.get_response(request)


class AdminSessionMiddleware(AdminOnlyMixin, SessionMiddleware):
    pass


class AdminAuthenticationMiddleware(AdminOnlyMixin, AuthenticationMiddleware):
    pass


class AdminMessageMiddleware(AdminOnlyMixin, MessageMiddleware):
    pass
