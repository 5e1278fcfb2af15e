"""Metrics and logging shared by every role."""
