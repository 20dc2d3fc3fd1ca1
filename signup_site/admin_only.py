"""
Sessions, logged-in users and messages, for the admin only.

The public pages (the form, the thank-you page, the error pages) use none of
the three, yet with Django's middleware every request builds them: a session
store, a lazy user, a message storage, and on the way out a look at whether
any of them changed. On the sign-up form that was a fifth of the page's cost.

Each class here is Django's own, run for requests under the admin's URL and
skipped for everything else. They are subclasses in the same places in
MIDDLEWARE, so the admin's system checks (admin.E408-E410) still find them.
A session cookie sent to a public page is simply not read there; the admin
behaves exactly as before.
"""

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware


class AdminOnlyMixin:
    """Run the middleware it is mixed into for the admin's URLs only."""

    def __init__(self, get_response):
        super().__init__(get_response)
        # path_info never holds the script prefix, so this matches however
        # the site is mounted.
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
