"""A loopback HTTP proxy that forwards every request to a Loci node unchanged, except that the
`version` field of `GET /health` is replaced (e.g. by "0.12.3").

dakera-py's integration suite gates its `TestServer0123` class on the version `/health` reports.
Loci reports its own version, so those tests are skipped against the node itself; running the
unmodified suite once more through this proxy shows how Loci answers them.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}


def _handler(upstream: str, version: str):
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if self.command == "GET" and self.path.split("?")[0] == "/health" and resp.status == 200:
                    doc = json.loads(data)
                    doc["version"] = version
                    data = json.dumps(doc).encode()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                conn.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

    return Handler


class VersionShim:
    def __init__(self, upstream: str, version: str = "0.12.3"):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream, version))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "VersionShim":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":  # manual use: python versionshim.py http://127.0.0.1:PORT
    import sys
    import time

    with VersionShim(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "0.12.3") as s:
        print(s.url, flush=True)
        while True:
            time.sleep(3600)
