"""Helpers and job types shared by the tests."""
