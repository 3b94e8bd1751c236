"""Shell and Python tools around the product: setup, services, the demo hall (docs/demo.md).

A package so that the demo's modules (``scripts.sample_media``, ``scripts.local_broker``,
``scripts.loopback``) can be imported by the demo and by the tests that build on them; it is
not part of the installed distribution (pyproject.toml lists only the product's packages).
"""
