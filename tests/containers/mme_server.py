"""A bring-your-own multi-model container (§8.4) for the tests, used as a ``process:`` image.

Routes: ``GET /ping``; ``POST /models`` {"model_name", "url"}; ``GET /models``;
``GET|DELETE /models/<name>``; ``POST /models/<name>/invoke``. A model is a directory with
``ident.txt`` (its identity, echoed by every call) and optionally ``load_delay`` (seconds to
sleep while loading) and ``fail_load`` (a load answers 500 with that file's text).

Environment:
- ``MME_EVENTS``: a file every instance appends ``<pid> load|unload <ident>`` lines to, so a
  test can count loads across instances;
- ``MME_MAX_MODELS``: how many models fit; one more load answers 507;
- ``MME_LOAD_DELAY``: seconds every load takes (added to a model's own ``load_delay``).

An invocation answers JSON {"ident", "pid", "target" (the X-Amzn-SageMaker-Target-Model
header), "body"}; a body of ``crash`` ends the process at once.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

EVENTS = os.environ.get("MME_EVENTS")
MAX_MODELS = int(os.environ.get("MME_MAX_MODELS", "1000"))
LOAD_DELAY = float(os.environ.get("MME_LOAD_DELAY", "0"))

models = {}  # model name -> {"url": ..., "ident": ...}
lock = threading.Lock()


def record(event, ident):
    if EVENTS:
        with open(EVENTS, "a") as events:
            events.write(f"{os.getpid()} {event} {ident}\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/ping":
            return self.answer(200, b"")
        if self.path.startswith("/models"):
            parts = self.path.split("?")[0].strip("/").split("/")
            with lock:
                if len(parts) == 1:
                    listing = [{"modelName": n, "modelUrl": m["url"]} for n, m in models.items()]
                    return self.answer(200, {"models": listing})
                found = models.get(parts[1])
            if found is None:
                return self.answer(404, {"error": f"Model {parts[1]} is not loaded."})
            return self.answer(200, {"modelName": parts[1], "modelUrl": found["url"]})
        return self.answer(404, {"error": "no such route"})

    def do_DELETE(self):
        name = self.path.strip("/").split("/")[-1]
        with lock:
            found = models.pop(name, None)
        if found is None:
            return self.answer(404, {"error": f"Model {name} is not loaded."})
        record("unload", found["ident"])
        return self.answer(200, {"status": "unloaded"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = self.path.strip("/").split("/")
        if parts == ["models"]:
            return self.load(json.loads(body))
        if len(parts) == 3 and parts[0] == "models" and parts[2] == "invoke":
            with lock:
                found = models.get(parts[1])
            if found is None:
                return self.answer(404, {"error": f"Model {parts[1]} is not loaded."})
            if body == b"crash":
                os._exit(3)
            return self.answer(
                200,
                {
                    "ident": found["ident"],
                    "pid": os.getpid(),
                    "target": self.headers.get("X-Amzn-SageMaker-Target-Model"),
                    "body": body.decode(),
                },
            )
        return self.answer(404, {"error": "use /models/<name>/invoke"})

    def load(self, spec):
        name, url = spec["model_name"], Path(spec["url"])
        ident = (url / "ident.txt").read_text()
        if (url / "fail_load").exists():
            return self.answer(500, {"error": (url / "fail_load").read_text()})
        with lock:
            if name in models:
                return self.answer(409, {"error": f"Model {name} is already loaded."})
            if len(models) >= MAX_MODELS:
                return self.answer(507, {"error": "Out of memory: too many models loaded."})
            models[name] = {"url": str(url), "ident": "loading"}
        delay = LOAD_DELAY
        if (url / "load_delay").exists():
            delay += float((url / "load_delay").read_text())
        time.sleep(delay)
        with lock:
            models[name]["ident"] = ident
        record("load", ident)
        return self.answer(200, {"status": "loaded"})

    def answer(self, status, payload):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
port = int(os.environ["SAGEMAKER_BIND_TO_PORT"])
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
