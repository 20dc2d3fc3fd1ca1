"""A mail server on loopback that accepts every mail and writes one line per
mail to LOG: the wall-clock time it took the mail, then its recipients. The
benchmark's mailer phases count these lines and time them against the
sign-ups' signed_up_at (the same machine's clock).

    python -m bench.smtp_sink PORT LOG
"""

import asyncio
import signal
import sys
import time

from aiosmtpd.smtp import SMTP


class Accept:
    """aiosmtpd's handler: every mail accepted, none kept."""

    def __init__(self, log):
        self.log = log

    async def handle_DATA(self, server, session, envelope):
        # The moment the mailer's DATA is complete, just before the 250 that
        # tells it the mail is taken.
        self.log.write(f"{time.time():.6f} {' '.join(envelope.rcpt_tos)}\n")
        return "250 OK"


async def serve(port, log):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    handler = Accept(log)
    # A fixed host name: aiosmtpd would otherwise ask DNS for this machine's.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench.localhost"), "127.0.0.1", port
    )
    print("listening", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    # Line-buffered: the benchmark reads the lines while mail arrives.
    with open(path, "a", buffering=1) as log:
        asyncio.run(serve(port, log))


if __name__ == "__main__":
    main()
