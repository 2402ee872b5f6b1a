"""A vendor stub with a fixed latency (run as its own process, so its CPU is not counted as the relay's).

Usage: python bench/stub.py LATENCY_MS  -> prints the port, serves until killed. HTTP/1.1 keep-alive.
"""

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one segment per answer: no Nagle / delayed-ACK stall
    latency = 0.05

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.latency)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")


if __name__ == "__main__":
    Stub.latency = float(sys.argv[1]) / 1000
    ThreadingHTTPServer.request_queue_size = 128  # many connections at once (AppsFlyer sends 16 in parallel)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()
