"""A tiny text generator for the ``demo-stream`` endpoint: a word-level Markov chain.

It learns which word follows which from ``corpus.txt`` beside this directory at load time and
then walks that chain, one token at a time, so ``InvokeEndpointWithResponseStream`` has
something real to stream. No weights are downloaded.

Request (``application/json``)::

    {"inputs": "the river", "parameters": {"max_new_tokens": 40, "seed": 7, "delay_ms": 15}}

Each streamed item is the next word followed by a space. A plain ``InvokeEndpoint`` returns the
same words joined.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from collections.abc import Iterator
from typing import Any


def model_fn(model_dir: str) -> dict[str, Any]:
    with open(os.path.join(model_dir, "corpus.txt"), encoding="utf-8") as corpus:
        words = corpus.read().split()
    chain: dict[str, list[str]] = {}
    for current, following in itertools.pairwise(words):
        chain.setdefault(current.lower(), []).append(following)
    return {"chain": chain, "starts": [w for w in words if w[:1].isupper()]}


def input_fn(body: str | bytes, content_type: str | None) -> dict[str, Any]:
    if content_type not in (None, "", "application/json"):
        raise ValueError(f"expected application/json, got {content_type}")
    request = json.loads(body or "{}")
    return request if isinstance(request, dict) else {"inputs": str(request)}


def predict_fn(request: dict[str, Any], model: dict[str, Any]) -> Iterator[str]:
    parameters = request.get("parameters") or {}
    count = max(1, min(int(parameters.get("max_new_tokens", 40)), 512))
    delay = max(0.0, min(float(parameters.get("delay_ms", 15)), 1000.0)) / 1000
    rng = random.Random(parameters.get("seed"))  # noqa: S311 - text generation, not secrets
    prompt = str(request.get("inputs", "")).split()
    word = prompt[-1] if prompt else rng.choice(model["starts"])
    chain = model["chain"]

    def tokens() -> Iterator[str]:
        current = word
        for _ in range(count):
            followers = chain.get(current.lower()) or model["starts"]
            current = rng.choice(followers)
            yield current + " "
            if delay:
                time.sleep(delay)

    return tokens()


def output_fn(token: str, accept: str) -> tuple[bytes, str]:
    return token.encode("utf-8"), "text/plain; charset=utf-8"
