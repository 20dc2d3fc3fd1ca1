"""A field added to the form (and the model) as docs/architecture.md's
"Adding a field" says: rendered with its label, error and ARIA wiring by
Django's own form rendering, validated, and stored by register()."""

import re

import pytest
from django import forms
from django.db import connection, models

from accounts import views
from accounts.forms import SignupForm
from accounts.models import Signup, python_defaults
from tests.support.forms import signed


class ExtendedSignupForm(SignupForm):
    topic = forms.ChoiceField(
        label="Topic",
        choices=[("", "Choose one"), ("news", "News"), ("events", "Events")],
    )
    consent = forms.BooleanField(
        label="I agree to be written to",
        error_messages={"required": "Please agree, or we cannot write to you."},
    )
    note = forms.CharField(
        label="Anything else?", widget=forms.Textarea, required=False
    )


@pytest.fixture
def extended_site(db, monkeypatch):
    """The site with ExtendedSignupForm, and Signup with topic, consent and
    source columns (added inside the test's transaction, so rolled back with
    it)."""
    added = [
        models.CharField("topic", max_length=20, default=""),
        models.BooleanField("consent", default=False),
        # On the model only, with a default Django keeps in Python.
        models.CharField("source", max_length=20, default="the form"),
    ]
    for name, field in zip(["topic", "consent", "source"], added, strict=True):
        field.contribute_to_class(Signup, name)
    with connection.schema_editor() as editor:
        for field in added:
            editor.add_field(Signup, field)
    monkeypatch.setattr(views, "SignupForm", ExtendedSignupForm)
    views.blank_fields.cache_clear()
    python_defaults.cache_clear()
    yield
    views.blank_fields.cache_clear()
    for field in added:
        Signup._meta.local_fields.remove(field)
    Signup._meta._expire_cache()
    python_defaults.cache_clear()


def input_tag(html, field_id):
    return re.search(rf'<(input|select|textarea) [^>]*id="{field_id}"[^>]*>', html)


def test_the_added_fields_render_with_their_labels(client, extended_site):
    html = client.get("/").content.decode()

    assert '<label for="id_topic">Topic</label>' in html
    assert '<option value="news">News</option>' in html
    assert input_tag(html, "id_topic").group(1) == "select"
    assert '<label for="id_consent">I agree to be written to</label>' in html
    assert 'type="checkbox"' in input_tag(html, "id_consent").group()
    assert '<label for="id_note">Anything else?</label>' in html
    assert input_tag(html, "id_note").group(1) == "textarea"


def test_the_added_fields_are_validated_with_their_errors_wired(client, extended_site):
    response = client.post(
        "/", signed({"name": "Ada", "email": "ada@example.com", "topic": "other"})
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert Signup.objects.count() == 0
    for field in ("topic", "consent"):
        assert f'<ul class="errorlist" id="id_{field}_error">' in html
        tag = input_tag(html, f"id_{field}").group()
        assert 'aria-invalid="true"' in tag
        assert f'aria-describedby="id_{field}_error"' in tag
    assert "Please agree, or we cannot write to you." in html
    assert "autofocus" in input_tag(html, "id_topic").group()


def test_the_added_fields_are_stored_and_the_form_only_ones_are_not(
    client, extended_site
):
    data = {"name": "Ada", "email": "ada@example.com", "topic": "events"}
    response = client.post("/", signed({**data, "consent": "on", "note": "Hi"}))

    assert response.status_code == 302
    stored = Signup.objects.values("name", "email", "topic", "consent").get()
    assert stored == {**data, "consent": True}


def test_a_model_field_the_form_lacks_is_stored_with_its_default(client, extended_site):
    data = {"name": "Ada", "email": "ada@example.com", "topic": "news"}
    response = client.post("/", signed({**data, "consent": "on"}))

    assert response.status_code == 302
    assert Signup.objects.values_list("source", flat=True).get() == "the form"
