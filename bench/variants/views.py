"""A proposal for accounts.views: the form's fields worked out in Python."""

from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.forms import SignupForm
from accounts.models import Signup
from accounts.views import SIGNUP_TEMPLATE, thanks  # noqa: F401 (the URLconf's)


def field_rows(form):
    """What the template writes for each field, looked up once. The template
    language resolves field.field.widget.attrs.autocomplete and the like
    through several layers each time; that was a third of the page's cost."""
    first_invalid = form.first_invalid_field
    rows = []
    for field in form:
        errors = field.errors
        rows.append(
            {
                "name": field.html_name,
                "id": field.id_for_label,
                "label": field.label,
                "type": field.field.widget.input_type,
                "value": field.value(),
                "autocomplete": field.field.widget.attrs.get("autocomplete"),
                "max_length": field.field.max_length,
                "errors": errors,
                "autofocus": bool(errors) and field.name == first_invalid,
            }
        )
    return rows


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request):
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            Signup.objects.register(**form.cleaned_data)
            return redirect("accounts:thanks")
    else:
        form = SignupForm()
    return render(request, SIGNUP_TEMPLATE, {"form": form, "fields": field_rows(form)})
