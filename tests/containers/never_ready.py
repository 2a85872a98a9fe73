"""A container-contract server whose /ping never succeeds (used as a ``process:`` image)."""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


print("never_ready: still warming up the cache", file=sys.stderr, flush=True)
port = int(os.environ["SAGEMAKER_BIND_TO_PORT"])
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
