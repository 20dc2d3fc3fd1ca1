from functools import cache

from django.conf import settings
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import SafeString
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts import bots, consent, mail
from accounts.forms import SignupForm
from accounts.models import Signup


def render_fields(form):
    return render_to_string("accounts/signup_fields.html", {"form": form}) + (
        consent_note()
    )


@cache
def consent_note():
    """The owner's consent sentence (unless it labels the checkbox) and
    privacy link, below the fields: the same for every visitor."""
    return render_to_string(
        "accounts/consent_note.html",
        {
            "text": ""
            if settings.SIGNUP_CONSENT_CHECKBOX
            else settings.SIGNUP_CONSENT_TEXT,
            "privacy_url": settings.SIGNUP_PRIVACY_URL,
        },
    )


@cache
def blank_fields():
    """The empty form's fields, rendered once per process: they are the same
    for every visitor (the CSRF token and the form token are outside them)."""
    return render_fields(SignupForm())


def form_page(request, form=None, *, token=None, resend=False):
    """The sign-up page with FORM (blank by default) and TOKEN (default: a
    new one); RESEND adds the sentence asking to send the form again."""
    if form is not None:
        fields = render_fields(form)
        context = {"form": form, "resend": resend}
    else:
        # In development a template edit shows on reload.
        fields = render_fields(SignupForm()) if settings.DEBUG else blank_fields()
        context = {}
    # Joined here, not in the template: each template variable of this page
    # costs more than signing the token.
    token_input = (
        f'<input type="hidden" name="{bots.TOKEN_FIELD}"'
        f' value="{escape(token or bots.issue_token())}">'
    )
    context["fields"] = SafeString(token_input + fields)
    return render(request, "accounts/signup.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request):
    """Show the sign-up form; store a valid sign-up and redirect to the thanks
    page, unless it looks automated (accounts.bots)."""
    if request.method != "POST":
        return form_page(request)
    form = SignupForm(request.POST)
    refusal = bots.refusal(request.POST)
    token = bots.token_for_form_shown_again(request.POST, refusal)
    if refusal in bots.HARD:
        # What a person sending the same fields gets; nothing is stored.
        bots.record(request, refusal)
        if form.is_valid():
            return redirect("accounts:thanks")
        return form_page(request, form, token=token)
    if not form.is_valid():
        return form_page(request, form, token=token)
    if refusal:
        # Perhaps a person whose browser filled the form in at once: the form
        # again, with a token old enough, so their next click stores it; a
        # script that does not read the page stores nothing.
        bots.record(request, refusal)
        return form_page(request, form, token=token, resend=True)
    Signup.objects.register(
        {**form.signup_data, "consent_version": consent.wording().version},
        confirm=settings.SIGNUP_DOUBLE_OPT_IN,
    )
    # Post/Redirect/Get: a reload of the thanks page cannot resubmit, and the
    # address never appears in a URL.
    return redirect("accounts:thanks")


@require_http_methods(["GET", "HEAD"])
def thanks(request):
    # The same page whether the address was new, waiting or confirmed.
    context = {"confirming": settings.SIGNUP_DOUBLE_OPT_IN}
    return render(request, "accounts/thanks.html", context)


def link_problem(request, problem):
    """The page for a link that cannot be used, saying what to do instead;
    400 for a link this site did not make, 410 for one that expired or
    whose sign-up is gone."""
    status = 400 if problem == "bad" else 410
    context = {"problem": problem, "days": settings.SIGNUP_CONFIRM_DAYS}
    return render(request, "accounts/link_problem.html", context, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request, token):
    """A confirmation link: GET shows a button, only its POST confirms (mail
    scanners open links, and must not confirm for the person)."""
    try:
        signup_id = mail.confirmed_signup_id(token)
    except mail.ExpiredLink:
        return link_problem(request, "expired")
    except mail.BadLink:
        return link_problem(request, "bad")
    if request.method != "POST":
        return render(request, "accounts/confirm.html")
    if not Signup.objects.confirm(signup_id):
        return link_problem(request, "gone")
    return render(request, "accounts/confirmed.html")


# RFC 8058: a mail client's one-click POST carries no cookie and no CSRF
# token; the signed token in the address is what authenticates it.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token):
    """An unsubscribe link: GET shows a button; a POST (the button, or a mail
    client's one-click) erases the sign-up and answers here, never with a
    redirect."""
    try:
        signup_id = mail.unsubscribing_signup_id(token)
    except mail.BadLink:
        return link_problem(request, "bad")
    if request.method != "POST":
        return render(request, "accounts/unsubscribe.html")
    # Already gone is the same answer: the address is off the list.
    Signup.objects.filter(pk=signup_id).delete()
    return render(request, "accounts/unsubscribed.html")
