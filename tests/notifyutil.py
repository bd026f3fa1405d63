"""A local Slack-compatible webhook receiver for the notification tests: a real HTTP
server (http.server) in a thread on 127.0.0.1, recording what it is sent."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """POST / records the JSON body and answers the next status of `statuses` (then
    200 for ever). url holds a secret-looking path, as a Slack webhook URL does."""

    SECRET_PATH = "/services/T000/B000/not-a-real-secret-token"

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[dict] = []  # every request, with the status it got
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.received.append({"path": self.path, "body": body, "status": status})
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"server error")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.SECRET_PATH}"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def delivered(self) -> list[dict]:
        """The bodies of the requests answered with success."""
        with self.lock:
            return [r["body"] for r in self.received if r["status"] < 300]

    def delivered_jobs(self) -> list[int]:
        """The job number of each delivered message, in order ("(#12)" in its text)."""
        return [int(re.search(r"\(#(\d+)\)", body["text"]).group(1)) for body in self.delivered()]
