"""Squall: a function-as-a-service platform that speaks the Apache OpenWhisk REST API."""

__version__ = "0.1.0"
