"""Turning an app id into an address: traffic policies and the resolve algorithm.

The policies are described for users in README "Cross-cluster traffic policies".
"""
