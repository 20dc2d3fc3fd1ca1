"""
Variants of the site, kept as settings modules (and the files they point at)
so a proposed change can be timed against the site in the same run, e.g.

    python -m bench --target site \
        --target lean=site,DJANGO_SETTINGS_MODULE=bench.variants.lean_form_settings
    python -m bench.profile --settings bench.site_settings \
        --settings bench.variants.lean_form_settings

The variants:

- lean_form_settings: the form's fields worked out in the view (views.py,
  urls.py, templates/accounts/signup.html);
- cached_form_settings: the blank form's fields rendered once per process
  ({% cache %} in cached_templates/accounts/signup.html; same HTML but for
  blank lines).

A variant that was adopted is deleted here once the site does the same (the
admin-only sessions, signup_site.admin_only, began as one).
Nothing here is used by the site itself.
"""
