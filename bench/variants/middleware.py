"""A proposal for signup_site: sessions, users and messages for /admin/ only."""

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware

ADMIN_PREFIX = "/admin/"


class AdminSessionMiddleware:
    """SessionMiddleware, AuthenticationMiddleware and MessageMiddleware, in
    that order, for requests to the admin only.

    The public pages use no session, no logged-in user and no messages, yet
    every request paid for building all three (lazily, but still objects,
    imports by dotted path and a look at the cookies). Requests outside
    /admin/ now go straight on.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.admin = SessionMiddleware(
            AuthenticationMiddleware(MessageMiddleware(get_response))
        )

    def __call__(self, request):
        if request.path_info.startswith(ADMIN_PREFIX):
            return self.admin(request)
        return self.get_response(request)
