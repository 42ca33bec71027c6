"""The ``repo`` fixture (a repository with one local environment) for every test of this folder."""

from tests.providers.test_local_provider import repo

__all__ = ["repo"]
