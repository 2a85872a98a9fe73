"""A container with stateful sessions (§7.6, container side), run as a ``process:`` image.

Stdlib only; serves on $SAGEMAKER_BIND_TO_PORT. Environment:

- ``SESSION_TTL_S`` (default 1200): a new session's lifetime. ``Expires`` is rounded up to
  the next whole second, so a session lives at least that long.
- ``SESSION_HEADER`` (default ``X-Amzn-SageMaker-New-Session-Id``): the response header that
  announces a new session; ``X-Amzn-SageMaker-Session-Id`` mimics DJL containers.

``POST /invocations`` by its ``X-Amzn-SageMaker-Session-Id`` header:

- ``NEW_SESSION``: open a session; answers ``{"session": id, "pid": pid, "count": 0}``.
- an id this process opened and has not closed or seen expire: with the JSON body
  ``{"requestType": "CLOSE"}`` close it (answers ``X-Amzn-SageMaker-Closed-Session-Id``),
  otherwise count the call and answer ``{"session": id, "pid": pid, "count": n}``.
- any other id: 400 ``unknown session <id>``.
- no header: ``{"session": null, "pid": pid, "count": 0}``.

With the JSON body ``{"stream": n}`` the answer is instead ``n`` chunks of chunked transfer,
``<session>:<pid>:<count>:<i>\\n`` each (``<session>`` is ``-`` without one).
"""

import json
import math
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TTL_S = float(os.environ.get("SESSION_TTL_S", "1200"))
NEW_HEADER = os.environ.get("SESSION_HEADER", "X-Amzn-SageMaker-New-Session-Id")
PID = os.getpid()

sessions = {}  # id -> [expires_at, count]
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle's algorithm and the
    # peer's delayed ACK add 40 ms to every call.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._send(200 if self.path == "/ping" else 404, b"", {})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {}
        if not isinstance(request, dict):
            request = {}
        session = self.headers.get("X-Amzn-SageMaker-Session-Id")
        headers = {}
        count = 0
        with lock:
            if session == "NEW_SESSION":
                session = str(uuid.uuid4())
                expires = math.ceil(time.time() + TTL_S)
                sessions[session] = [expires, 0]
                stamp = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                headers[NEW_HEADER] = f"{session}; Expires={stamp}"
            elif session is not None:
                state = sessions.get(session)
                if state is None or time.time() >= state[0]:
                    sessions.pop(session, None)
                    self._send(400, f"unknown session {session}".encode(), {})
                    return
                if request.get("requestType") == "CLOSE":
                    del sessions[session]
                    headers["X-Amzn-SageMaker-Closed-Session-Id"] = session
                else:
                    state[1] += 1
                    count = state[1]
        if request.get("stream"):
            self._stream(f"{session or '-'}:{PID}:{count}", int(request["stream"]))
            return
        body = {"session": session, "pid": PID, "count": count}
        headers["Content-Type"] = "application/json"
        self._send(200, json.dumps(body).encode(), headers)

    def _send(self, status, body, headers):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, label, count):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index in range(count):
            data = f"{label}:{index}\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


port = int(os.environ["SAGEMAKER_BIND_TO_PORT"])
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
