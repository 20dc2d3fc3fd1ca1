"""
Static files under hashed names, each URL worked out once per process.

Django's ManifestStaticFilesStorage works a URL out afresh for every
{% static %}: the manifest lookup, then urljoin, split and unquote. The
manifest is read once per process and a new one comes with a new image, so
the answer for a name never changes while the process runs.
"""

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestStaticFilesStorage


class CachedManifestStaticFilesStorage(ManifestStaticFilesStorage):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._urls = {}

    def url(self, name, force=False):
        # In debug mode Django answers with the unhashed name, so the mode is
        # part of the key; a name missing from the manifest raises every time.
        key = (name, force, settings.DEBUG)
        try:
            return self._urls[key]
        except KeyError:
            url = self._urls[key] = super().url(name, force)
            return url
