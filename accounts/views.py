from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.forms import SignupForm
from accounts.models import Signup

SIGNUP_TEMPLATE = "accounts/signup.html"
THANKS_TEMPLATE = "accounts/thanks.html"


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request):
    """Show the sign-up form; store a valid sign-up and redirect to the thanks page."""
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            Signup.objects.register(**form.cleaned_data)
            # Post/Redirect/Get: a reload of the thanks page cannot resubmit,
            # and the address never appears in a URL.
            return redirect("accounts:thanks")
    else:
        form = SignupForm()
    return render(request, SIGNUP_TEMPLATE, {"form": form})


@require_http_methods(["GET", "HEAD"])
def thanks(request):
    return render(request, THANKS_TEMPLATE)
