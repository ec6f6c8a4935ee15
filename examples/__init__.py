"""Example applications used by the demo and the end-to-end tests."""
