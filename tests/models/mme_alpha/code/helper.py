"""Shares its module name with mme_beta's helper: each model must get its own."""

NAME = "alpha"
