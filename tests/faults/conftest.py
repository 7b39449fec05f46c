"""The fault suite uses the ingest tests' process fixture (and tests/conftest.py's server factories)."""

from tests.ingest.conftest import ingest_factory  # noqa: F401 - a fixture, used by name
