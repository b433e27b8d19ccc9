"""A fake's handler behind a real HTTP server on 127.0.0.1, so that the command line reaches it by ``--base-url``
through the same HTTP stack it uses against the real service."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

Handler = Callable[[httpx.Request], httpx.Response]
_HOP_BY_HOP = ("content-length", "transfer-encoding", "connection", "content-encoding")


@contextmanager
def served(handler: Handler) -> Iterator[str]:
    """Serve ``handler`` for the duration of the block; yields the server's base URL."""

    class Adapter(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = httpx.Request(self.command, f"http://{self.headers.get('Host', 'localhost')}{self.path}",
                                    headers=list(self.headers.items()), content=body)
            response = handler(request)
            content = response.read()
            self.send_response(response.status_code)
            for name, value in response.headers.multi_items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Adapter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
