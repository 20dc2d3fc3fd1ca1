"""
The serving stack on loopback, without Docker, for the test suite and the
benchmark alike: throwaway PostgreSQL clusters, Debian's nginx with the
project's template, gunicorn with the project's config, and a DNS server
that plays Docker's. Every process is a child started here and stopped by
its pid; nothing listens beyond 127.0.0.1.
"""
