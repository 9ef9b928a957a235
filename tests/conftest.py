"""Fixtures shared by every test: nothing here talks to a network service."""
