"""The sign-up site's benchmark suite: see bench/__main__.py and docs/performance.md."""
