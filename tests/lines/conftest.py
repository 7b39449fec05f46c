"""The vendor line's fixture for the tests in this folder (other folders import it the same way)."""

from tests.lines import vendor_line_factory  # noqa: F401 - a pytest fixture, found by name
