"""Helpers for testing sagehost and code that uses it. Never imported by sagehost itself."""
