"""Helpers shared by the supervisor and doctor tests."""
