"""How the benchmark containers serve: uvicorn with uvloop and httptools on
``$SAGEMAKER_BIND_TO_PORT``, nothing logged per request."""

from __future__ import annotations

import os
from typing import Any

import uvicorn


def serve(app: Any) -> None:
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
