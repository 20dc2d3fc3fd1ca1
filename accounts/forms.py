import re

from django import forms
from django.conf import settings
from django.contrib.auth.base_user import BaseUserManager
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.forms.renderers import DjangoTemplates
from django.utils.translation import gettext_lazy as _

from accounts.models import Signup

# What can hide or reorder a name where it is shown later: control characters
# (Unicode's Cc), surrogates (Cs), bidirectional embeddings, overrides and
# isolates, and U+FFFD, which stands for bytes that were not UTF-8.
FORBIDDEN_IN_NAMES = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufffd]"
)


DEFAULT_CONSENT_LABEL = _("I agree to receive mail from this list.")


class PublicDomainEmailValidator(EmailValidator):
    """Django's email validator with one rule for the domain: a public domain
    name, never "localhost" or an address in brackets ([192.0.2.1])."""

    def __init__(self, **kwargs):
        super().__init__(allowlist=[], **kwargs)

    def validate_domain_part(self, domain_part):
        return bool(self.domain_regex.match(domain_part))


class SignupEmailField(forms.EmailField):
    # Replacing (not adding to) the default keeps one message per error.
    default_validators = [PublicDomainEmailValidator()]


class SignupFormRenderer(DjangoTemplates):
    # Each field in the site's wrapper around Django's own field template.
    field_template_name = "accounts/field.html"


class SignupForm(forms.Form):
    """The sign-up form. Its fields that are also Signup's are stored
    (signup_data). The page adds a trap field for scripts, which is not the
    form's (accounts.bots)."""

    default_renderer = SignupFormRenderer()

    name = forms.CharField(
        label=_("Name"),
        max_length=Signup._meta.get_field("name").max_length,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
        error_messages={"required": _("Please enter your name.")},
    )
    email = SignupEmailField(
        label=_("Email address"),
        max_length=Signup._meta.get_field("email").max_length,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
        error_messages={
            "required": _("Please enter your email address."),
            "invalid": _("Please enter a valid email address, like name@example.com."),
        },
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        if settings.SIGNUP_CONSENT_CHECKBOX:
            # Unticked until the person ticks it: a ticked box is no consent.
            self.fields["consent"] = forms.BooleanField(
                label=settings.SIGNUP_CONSENT_TEXT or DEFAULT_CONSENT_LABEL,
                error_messages={"required": _("Please tick the box to sign up.")},
            )

    @property
    def first_invalid_field(self):
        """The name of the first field with an error: it gets the focus."""
        return next((name for name in self.fields if name in self.errors), None)

    def full_clean(self):
        super().full_clean()
        if first := self.first_invalid_field:
            self.fields[first].widget.attrs["autofocus"] = True

    @property
    def signup_data(self):
        """The cleaned data of the fields Signup stores: what register() takes."""
        stored = {field.name for field in Signup._meta.concrete_fields}
        return {
            name: value for name, value in self.cleaned_data.items() if name in stored
        }

    def clean_name(self):
        name = self.cleaned_data["name"]
        if FORBIDDEN_IN_NAMES.search(name):
            raise ValidationError(
                _("Names cannot contain control characters or malformed text."),
                code="control_characters",
            )
        return name

    def clean_email(self):
        # The domain part is case-insensitive; the local part is kept as typed.
        return BaseUserManager.normalize_email(self.cleaned_data["email"])
