"""Building object locations (S3 keys, file paths) from a base and parts."""

from __future__ import annotations


def join_location(base: str, *parts: str) -> str:
    """``base`` followed by each non-empty part, one ``/`` between each and none doubled.

    ``join_location("s3://b/out/", "", "x.out") == "s3://b/out/x.out"``: an absent
    ``S3OutputPathExtension`` is passed as ``""`` and vanishes.
    """
    segments = [s for part in parts for s in part.split("/") if s]
    scheme, sep, rest = base.partition("://") if "://" in base else ("", "", base)
    head = scheme + sep + rest.rstrip("/")  # never strips the "//" after the scheme
    if not segments:
        return head if head != scheme + sep else base
    return "/".join([head, *segments])
