"""A DNS server on 127.0.0.1 that plays Docker's embedded one, so nginx
resolves ``web`` the way it does in Compose. dnslib encodes and serves."""

import time

from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import DNSLogger, DNSServer


class FakeDNS:
    """Answers A queries from RECORDS over UDP. A name mapped to None gets
    NXDOMAIN, like Docker's DNS for a service with no running container.
    Answers carry Docker's 600 s TTL. Every query is recorded as
    (monotonic time, name, type)."""

    TTL = 600

    def __init__(self, records):
        self.records = dict(records)
        self.queries = []
        quiet = DNSLogger(log="-request,-reply,-truncated,-error", logf=lambda _: None)
        self._server = DNSServer(self, address="127.0.0.1", port=0, logger=quiet)
        self.port = self._server.server.server_address[1]
        self._server.start_thread()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def queries_for(self, name, qtype=QTYPE.A):
        return [
            when for when, qname, kind in self.queries if (qname, kind) == (name, qtype)
        ]

    def resolve(self, request, handler):
        """dnslib's resolver interface: the reply to REQUEST."""
        name = str(request.q.qname).rstrip(".").lower()
        self.queries.append((time.monotonic(), name, request.q.qtype))
        reply = request.reply()
        # An address, or a list of them (one per replica, as Docker answers).
        addresses = self.records.get(name)
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for address in [addresses] if isinstance(addresses, str) else addresses:
                reply.add_answer(
                    RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=self.TTL)
                )
        return reply

    def close(self):
        self._server.stop()
        self._server.server.server_close()
        self._server.thread.join(timeout=5)
