import unicodedata

from django import forms
from django.contrib.auth.base_user import BaseUserManager
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils.translation import gettext_lazy as _

from accounts.models import Signup

# Characters that are never part of a name but can hide or reorder text when
# it is shown later (in the admin, in an export): control characters, the
# explicit bidirectional embeddings, overrides and isolates, and U+FFFD, which
# stands where the browser sent bytes that were not UTF-8.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Not "Cn" (unassigned): Python may not know an emoji newer than its tables.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})
REPLACEMENT_CHARACTER = "\ufffd"


def is_forbidden_in_names(char):
    return (
        unicodedata.category(char) in FORBIDDEN_CATEGORIES
        or char in BIDI_CONTROLS
        or char == REPLACEMENT_CHARACTER
    )


class PublicDomainEmailValidator(EmailValidator):
    """Django's email validator with one rule for the domain: a public domain
    name. Django also accepts "localhost" (its allowlist) and an address in
    brackets, such as [192.0.2.1]; nobody signs up at either."""

    def __init__(self, **kwargs):
        super().__init__(allowlist=[], **kwargs)

    def validate_domain_part(self, domain_part):
        return bool(self.domain_regex.match(domain_part))


class SignupEmailField(forms.EmailField):
    # Replacing (not adding to) the default keeps one message per error.
    default_validators = [PublicDomainEmailValidator()]


class SignupForm(forms.Form):
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

    @property
    def first_invalid_field(self):
        """The name of the first field with an error: it gets the focus."""
        return next((name for name in self.fields if name in self.errors), None)

    def clean_name(self):
        name = self.cleaned_data["name"]
        if any(is_forbidden_in_names(char) for char in name):
            raise ValidationError(
                _("Names cannot contain control characters or malformed text."),
                code="control_characters",
            )
        return name

    def clean_email(self):
        # The domain part is case-insensitive; the local part is kept as typed.
        return BaseUserManager.normalize_email(self.cleaned_data["email"])
