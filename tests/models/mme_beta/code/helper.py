"""Shares its module name with mme_alpha's helper: each model must get its own."""

NAME = "beta"
