from functools import cache

from django.conf import settings
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_http_methods

from accounts.forms import SignupForm
from accounts.models import Signup


def render_fields(form):
    return render_to_string("accounts/signup_fields.html", {"form": form})


@cache
def blank_fields():
    """The empty form's fields, rendered once per process: they are the same
    for every visitor (the CSRF token is outside them)."""
    return render_fields(SignupForm())


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request):
    """Show the sign-up form; store a valid sign-up and redirect to the thanks page."""
    if request.method != "POST":
        # In development a template edit shows on reload.
        fields = render_fields(SignupForm()) if settings.DEBUG else blank_fields()
        return render(request, "accounts/signup.html", {"fields": fields})
    form = SignupForm(request.POST)
    if not form.is_valid():
        context = {"form": form, "fields": render_fields(form)}
        return render(request, "accounts/signup.html", context)
    Signup.objects.register(form.cleaned_data)
    # Post/Redirect/Get: a reload of the thanks page cannot resubmit, and the
    # address never appears in a URL.
    return redirect("accounts:thanks")


@require_http_methods(["GET", "HEAD"])
def thanks(request):
    return render(request, "accounts/thanks.html")
