"""
Variants of files the benchmark does not own, measured without editing them:
settings modules that swap in a middleware, a template or a view, so that a
proposed change can be timed against the site in the same run, e.g.

    python -m bench --target site --target ceiling \
        --target lean=site,DJANGO_SETTINGS_MODULE=bench.variants.lean_settings
    python -m bench.profile --settings bench.site_settings \
        --settings bench.variants.lean_settings

Nothing here is used by the site itself.
"""
