"""
A urlencoded form body that is not UTF-8 is refused with 400 before anything
reads it.

Django requires such a body to be UTF-8 (it refuses any other declared
charset), but when the bytes are not, it decodes the whole body as Latin-1
instead: raw bytes FF FE would become the valid name "ÿþ" and be stored.
Percent-encoded bytes and multipart fields are decoded with replacement
characters, which the form refuses itself. Browsers always percent-encode, so
only a broken or hostile client is turned away.
"""

from django.core.exceptions import BadRequest

URLENCODED = "application/x-www-form-urlencoded"


class FormEncodingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.content_type == URLENCODED and request.method not in (
            "GET",
            "HEAD",
        ):
            try:
                request.body.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("The form data is not valid UTF-8.") from None
        return self.get_response(request)
