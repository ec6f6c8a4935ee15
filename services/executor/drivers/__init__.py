"""Deployment drivers and traffic controls: the adapters that touch the target.

``registry.build_driver`` and ``registry.build_traffic`` pick one per service from
``settings.executor.services``.
"""
