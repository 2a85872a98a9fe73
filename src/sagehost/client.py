"""A small signed client for sagehost's own operations (job status), used by the CLI.

Credentials come from the standard AWS configuration (environment, profiles), falling back to
the loopback dev credentials ``test``/``test``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class ClientError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def call(
    url: str, target: str, params: dict[str, Any], region: str = "us-east-1"
) -> dict[str, Any]:
    """POST a JSON 1.1 operation to ``url`` signed with SigV4 and return the decoded answer."""
    credentials = boto3.session.Session().get_credentials() or Credentials("test", "test")
    body = json.dumps(params).encode()
    endpoint = url.rstrip("/") + "/"
    request = AWSRequest(
        method="POST",
        url=endpoint,
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    SigV4Auth(credentials, "sagemaker", region).add_auth(request)
    raw = urllib.request.Request(  # noqa: S310 - the URL is the operator's own server
        endpoint, data=body, headers=dict(request.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(raw, timeout=30) as reply:  # noqa: S310
            answer: dict[str, Any] = json.loads(reply.read())
            return answer
    except urllib.error.HTTPError as error:
        detail = json.loads(error.read() or b"{}")
        raise ClientError(
            str(detail.get("__type", error.code)), str(detail.get("Message", error.reason))
        ) from None
