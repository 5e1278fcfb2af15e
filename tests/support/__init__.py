"""Test doubles and helpers shared by the test suites (real servers, no mocks of our own code)."""
