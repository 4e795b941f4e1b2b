"""A stdlib HTTP server on a loopback port, served from a daemon thread.

The token server and the fault proxy are plain threaded servers on purpose: they must keep
answering while a test's trio loop is blocked in a synchronous helper, and they must never
hold up the test session when stopped (daemon threads, short shutdown poll).
"""

from __future__ import annotations

import http.server
import threading


class ServerThread:
    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
