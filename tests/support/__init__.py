"""Helpers shared by the test suites (no test module imports another test module)."""
