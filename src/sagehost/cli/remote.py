"""The CLI commands that call a running server's own signed operations (``sagehost jobs``,
``sagehost models``) print its answer, or say on stderr why there is none."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_answer(
    url: str, target: str, params: dict[str, Any], region: str
) -> dict[str, Any] | None:
    """Call ``target`` on the server at ``url`` and print its answer as JSON; ``None`` when
    the server refused the call or could not be reached."""
    from sagehost.client import ClientError, call  # boto3 only for the commands that need it

    try:
        answer = call(url, target, params, region)
    except ClientError as error:
        print(f"sagehost: {error}", file=sys.stderr)
        return None
    except OSError as error:
        print(f"sagehost: cannot reach {url}: {error}", file=sys.stderr)
        return None
    print(json.dumps(answer, indent=2))
    return answer
