"""signup_site.static_storage: the URLs Django's manifest storage gives, kept."""

import json

import pytest
from django.contrib.staticfiles.storage import ManifestStaticFilesStorage

from signup_site.static_storage import CachedManifestStaticFilesStorage

MANIFEST = {
    "site/site.css": "site/site.0123456789ab.css",
    "admin/css/base.css": "admin/css/base.ba9876543210.css",
    "admin/img/a file.svg": "admin/img/a file.feedc0ffee00.svg",
}
NAMES = [*MANIFEST, "site/site.css#top", "admin/img/a%20file.svg"]


@pytest.fixture
def storages(tmp_path):
    (tmp_path / "staticfiles.json").write_text(
        json.dumps({"paths": MANIFEST, "version": "1.1", "hash": "0"})
    )
    return (
        ManifestStaticFilesStorage(location=tmp_path, base_url="/static/"),
        CachedManifestStaticFilesStorage(location=tmp_path, base_url="/static/"),
    )


@pytest.mark.parametrize("debug", [False, True])
def test_every_url_is_the_one_django_gives(storages, settings, debug):
    django, kept = storages
    settings.DEBUG = debug

    for _ in range(2):  # worked out, then kept
        assert [kept.url(name) for name in NAMES] == [django.url(n) for n in NAMES]
        assert kept.url("site/site.css", force=True) == django.url(
            "site/site.css", force=True
        )


def test_the_debug_mode_is_part_of_what_is_kept(storages, settings):
    _, kept = storages

    assert kept.url("site/site.css") == "/static/site/site.0123456789ab.css"
    settings.DEBUG = True
    assert kept.url("site/site.css") == "/static/site/site.css"


def test_the_manifest_is_read_once_per_name(storages, monkeypatch):
    _, kept = storages
    looked_up = []
    stored_name = kept.stored_name
    monkeypatch.setattr(
        kept, "stored_name", lambda name: looked_up.append(name) or stored_name(name)
    )

    urls = {kept.url("site/site.css") for _ in range(5)}

    assert urls == {"/static/site/site.0123456789ab.css"}
    assert looked_up == ["site/site.css"]


def test_a_file_missing_from_the_manifest_fails_every_time(storages):
    _, kept = storages

    for _ in range(2):
        with pytest.raises(ValueError, match="Missing staticfiles manifest entry"):
            kept.url("accounts/missing.css")
