"""A tiny container for the worker tests: stdlib only, serving on $SAGEMAKER_BIND_TO_PORT.

Usage: ``python container_app.py MODE`` where MODE is

- ``echo``: /ping 200; POST /invocations answers the body as sent, with ``X-Received`` holding the
  request headers as JSON and ``X-Pid`` the pid; POST /env answers the environment as JSON;
  POST /crash exits at once without answering; POST /chunked answers the body in two chunks;
  POST /sick makes every later /ping answer 500.
  With $CHILD_PIDFILE set it first starts a child process (same process group) and writes the
  child's pid there. With $ONCE_MARKER set, only the first start serves: later starts find the
  marker file, print a line and exit with status 3. With $PORT_TAKEN_ONCE set, the first start
  fails as if its port were taken (and creates the marker); later starts serve.
- ``never-ready``: /ping answers 500 forever.
- ``exit-at-start``: prints a line to stderr and exits with status 3 before listening.
- ``crash``: /ping 200; POST /invocations exits at once without answering.
- ``slow``: like echo, but every POST first sleeps $SLOW_SECONDS (default 5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "echo"
    sick = False

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/ping":
            healthy = self.mode != "never-ready" and not Handler.sick
            self._send(200 if healthy else 500, b"", {})
        else:
            self._send(404, b"not found", {})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/crash" or self.mode == "crash":
            os._exit(1)
        if self.mode == "slow":
            time.sleep(float(os.environ.get("SLOW_SECONDS", "5")))
        if self.path == "/sick":
            Handler.sick = True
        if self.path == "/env":
            self._send(200, json.dumps(dict(os.environ)).encode(), {})
            return
        if self.path == "/chunked":
            self._send_chunked([body[: len(body) // 2], body[len(body) // 2 :]])
            return
        extra = {
            "Content-Type": self.headers.get("Content-Type", "application/octet-stream"),
            "X-Received": json.dumps(list(self.headers.items())),
            "X-Pid": str(os.getpid()),
        }
        self._send(200, body, extra)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, parts: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def main() -> None:
    mode = sys.argv[1]
    if mode == "exit-at-start":
        print("model failed to load: no weights found", file=sys.stderr)
        sys.exit(3)
    taken = os.environ.get("PORT_TAKEN_ONCE")
    if taken and not os.path.exists(taken):
        open(taken, "w").close()
        print("OSError: [Errno 98] Address already in use", file=sys.stderr)
        sys.exit(1)
    marker = os.environ.get("ONCE_MARKER")
    if marker:
        if os.path.exists(marker):
            print("restarted, giving up", file=sys.stderr)
            sys.exit(3)
        open(marker, "w").close()
    pidfile = os.environ.get("CHILD_PIDFILE")
    if pidfile:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(pidfile, "w") as out:
            out.write(str(child.pid))
    Handler.mode = mode
    host = os.environ.get("SAGEHOST_BIND_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler)
    server.daemon_threads = True
    print(f"{mode} serving on {server.server_address}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
