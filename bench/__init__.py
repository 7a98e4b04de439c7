"""Measurements and security drills that are not part of the product: run by ``make bench`` and
``make security``, never shipped (not a package in pyproject.toml, not in the Docker image)."""
