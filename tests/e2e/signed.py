"""Calls to sagehost's own JSON 1.1 operations (``SageHost.*``), signed as boto3 signs them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sagehost.testing.server import DEV_KEY, DEV_SECRET, RunningServer


def own_call(
    server: RunningServer,
    target: str,
    params: dict[str, Any],
    key: str = DEV_KEY,
    secret: str = DEV_SECRET,
    region: str = "us-east-1",
) -> tuple[int, dict[str, Any]]:
    """One of sagehost's own operations: the HTTP status and the decoded body, errors
    included."""
    body = json.dumps(params).encode()
    request = AWSRequest(
        method="POST",
        url=f"{server.url}/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(key, secret), "sagemaker", region).add_auth(request)
    raw = urllib.request.Request(
        f"{server.url}/", data=body, headers=dict(request.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(raw, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def signed_call(server: RunningServer, target: str, params: dict[str, Any]) -> dict[str, Any]:
    """One of sagehost's own operations as the dev account, which must succeed."""
    status, answer = own_call(server, target, params)
    assert status == 200, answer
    return answer
