"""
Static files under hashed names, each URL worked out once per process.

Django's ManifestStaticFilesStorage works a file's URL out afresh for every
{% static %}: it splits the name, looks it up in the manifest, joins the
result to STATIC_URL, then splits and unquotes that again. Every page asks
for the same few files (the admin's pages for a dozen), and the manifest is
read once when the process starts (a new collectstatic comes with a new
image, so with new processes), so the answer for a name never changes while
the process runs. It is kept after the first time.
"""

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestStaticFilesStorage


class HashedStaticFilesStorage(ManifestStaticFilesStorage):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._urls = {}

    def url(self, name, force=False):
        # In debug mode Django answers with the unhashed name, so the mode is
        # part of the key. A name missing from the manifest raises every time.
        key = (name, force, settings.DEBUG)
        try:
            return self._urls[key]
        except KeyError:
            url = self._urls[key] = super().url(name, force)
            return url
