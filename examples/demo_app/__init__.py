"""A small HTTP service deployed with the releases layout, for ``travi demo``.

Each release folder contains a ``release.json`` with the version and the share of requests that
fail with status 500. v1.1.0 is healthy; v1.2.0 fails about a quarter of its requests.
"""
