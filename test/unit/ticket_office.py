"""An in-process stand-in for Galaxy's ticket route (tickets.JobTickets.redeem), for the unit tests
of the job's side: it answers each ticket it was given once, with the credentials it was given, and
any other with Galaxy's 403."""

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from galaxy_cloud_storage.contracts import JOB_CREDENTIALS


class TicketOffice:
    def __init__(self):
        self.issued: dict[str, dict] = {}
        self.redeemed: list[str] = []
        #: statuses to answer the next requests with, before looking at their tickets
        self.troubles: list[int] = []
        self.requests = 0
        office = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                office.requests += 1
                if office.troubles:
                    status = office.troubles.pop(0)
                    self.answer(status, {"err_msg": f"trouble {status}", "err_code": 500001})
                    return
                credentials = office.issued.pop(body.get("ticket"), None)
                if credentials is None:
                    self.answer(403, {"err_msg": "This ticket is not valid for this job (wrong, or already used).",
                                      "err_code": 403002})  # fmt: skip
                else:
                    office.redeemed.append(self.path)
                    self.answer(200, credentials)

            def answer(self, status, document):
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def issue(self, minted) -> dict:
        """A ticket for ``minted`` (contracts.JobCredentials), as tickets.JobTickets.issue gives it."""
        ticket = secrets.token_urlsafe(32)
        self.issued[ticket] = JOB_CREDENTIALS.dump_python(minted, mode="json")
        port = self.server.server_address[1]
        return {"url": f"http://127.0.0.1:{port}/api/cloud/storage/jobs/f2db41e1fa331b3e/credentials", "ticket": ticket}

    def close(self):
        self.server.shutdown()
        self.server.server_close()
