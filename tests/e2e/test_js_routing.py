"""The routing headers as the JavaScript SDK v3 sends and reads them: TargetModel,
InferenceComponentName, SessionId with NewSessionId and ClosedSessionId."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sagehost.testing.server import RunningServer
from tests.e2e.conftest import unique
from tests.e2e.inference_component_helpers import create_component, hosting
from tests.e2e.multimodel_helpers import mme_endpoint
from tests.e2e.test_js_sdk import node, pytestmark  # noqa: F401 - skip without node
from tests.e2e.test_sessions import NEW_SESSION, deploy_sessions


def invoke(server: RunningServer, endpoint: str, body: Any, **extra: Any) -> Any:
    return node("invoke.mjs", server, endpoint, body, "--input=" + json.dumps(extra))


def test_target_model(server: RunningServer, sm: Any, tmp_path: Path) -> None:
    name, _, _ = mme_endpoint(sm, tmp_path, "jsmme", "one.tar.gz", "sub/dir/two.tar.gz")
    for target in ("one.tar.gz", "sub/dir/two.tar.gz"):
        result = invoke(server, name, {"x": 1}, TargetModel=target)
        assert result["error"] is None, result
        assert result["httpStatusCode"] == 200
        assert json.loads(result["body"])["ident"] == target
    missing = invoke(server, name, {"x": 1})["error"]
    assert missing["name"] == "ValidationError"
    assert missing["httpStatusCode"] == 400
    assert missing["message"] == (
        f"Endpoint {name} of account 000000000000 is a multi-model endpoint; name the model "
        "to invoke with TargetModel."
    )


def test_inference_component(server: RunningServer, sm: Any) -> None:
    endpoint, model = hosting(sm, "jsic")
    component = unique("jsicc")
    create_component(sm, component, endpoint, model)
    assert (
        sm.describe_inference_component(InferenceComponentName=component)[
            "InferenceComponentStatus"
        ]
        == "InService"
    )
    result = invoke(server, endpoint, {"x": 1}, InferenceComponentName=component)
    assert result["error"] is None, result
    assert result["variant"] == "AllTraffic"
    unknown = invoke(server, endpoint, {"x": 1}, InferenceComponentName="nope")["error"]
    assert unknown["name"] == "ValidationError"
    assert unknown["message"] == (
        f"Inference component nope was not found for endpoint {endpoint} of account 000000000000."
    )


def test_session_open_use_close(server: RunningServer, sm: Any) -> None:
    name = deploy_sessions(sm, unique("jssess"))
    opened = invoke(server, name, {"requestType": NEW_SESSION}, SessionId=NEW_SESSION)
    assert opened["error"] is None, opened
    match = re.fullmatch(
        r"([0-9a-f-]{36}); Expires=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", opened["newSessionId"]
    )
    assert match is not None, opened["newSessionId"]
    session = match.group(1)
    used = invoke(server, name, {"n": 1}, SessionId=session)
    assert used["error"] is None, used
    assert json.loads(used["body"])["session"] == session
    closed = invoke(server, name, {"requestType": "CLOSE"}, SessionId=session)
    assert closed["error"] is None, closed
    assert closed["closedSessionId"] == session
    gone = invoke(server, name, {"n": 2}, SessionId=session)["error"]
    assert gone["name"] == "ValidationError"
    assert gone["httpStatusCode"] == 400
