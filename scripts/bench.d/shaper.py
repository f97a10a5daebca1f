#!/usr/bin/python3
"""A TCP proxy that makes loopback look like a wide-area link, for scripts/bench.

Listens on 127.0.0.1 (a free port, written to --port-file) and forwards every connection to
127.0.0.1:--upstream-port, with
  - a round-trip time: every byte is delayed by half of --rtt-ms in each direction, and a
    new connection's first bytes wait one more round trip (the TCP handshake);
  - a bandwidth shared by all connections: one token bucket per direction of --mbit
    Mbit/s (a full-duplex link), handed out in 16 KiB slices in the order they are asked
    for, so parallel connections split the link instead of each getting all of it.
Each direction of a connection buffers at most --window bytes in flight (the proxy stops
reading from the sender when it is full), as a TCP window would. Not modelled: slow start,
loss, reordering. Python 3 standard library only; exits when its parent goes away.
"""

import argparse
import collections
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "support"))
from blob_proxy import watch_parent  # noqa: E402  (exits when the driver goes away)

SLICE = 16 << 10


class Link:
    """One direction of the shared link: a token bucket of `rate` bytes/s, small burst."""

    def __init__(self, rate):
        self.rate = rate
        self.lock = threading.Lock()
        self.free_at = 0.0

    def reserve(self, n):
        """The time at which n more bytes have gone over the link."""
        with self.lock:
            now = time.monotonic()
            start = max(now - SLICE / self.rate, self.free_at)
            self.free_at = start + n / self.rate
            return self.free_at


class Pipe:
    """src -> dst with a delay and the link's bandwidth, at most `window` bytes queued."""

    def __init__(self, src, dst, delay, link, window, ready_at):
        self.src, self.dst, self.delay, self.link = src, dst, delay, link
        self.window, self.ready_at = window, ready_at
        self.queue = collections.deque()  # (due time, bytes or None for end of stream)
        self.queued = 0
        self.cond = threading.Condition()

    def reader(self):
        try:
            while True:
                with self.cond:
                    while self.queued >= self.window:
                        self.cond.wait()
                data = self.src.recv(SLICE * 4)
                due = max(time.monotonic(), self.ready_at) + self.delay
                with self.cond:
                    self.queue.append((due, data or None))
                    self.queued += len(data)
                    self.cond.notify_all()
                if not data:
                    return
        except OSError:
            with self.cond:
                self.queue.append((0.0, None))
                self.cond.notify_all()

    def writer(self):
        failed = True
        try:
            while True:
                with self.cond:
                    while not self.queue:
                        self.cond.wait()
                    due, data = self.queue.popleft()
                sleep_until(due)
                if data is None:
                    self.dst.shutdown(socket.SHUT_WR)
                    failed = False
                    return
                for off in range(0, len(data), SLICE):
                    piece = data[off:off + SLICE]
                    sleep_until(self.link.reserve(len(piece)))
                    self.dst.sendall(piece)
                with self.cond:
                    self.queued -= len(data)
                    self.cond.notify_all()
        except OSError:
            pass
        finally:
            # Unblock the reader if it waits for room; on an error stop both sides.
            with self.cond:
                self.window = 1 << 62
                self.cond.notify_all()
            if failed:
                for s in (self.src, self.dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


def sleep_until(t):
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


def serve(client, upstream_port, delay, up, down, window):
    ready_at = time.monotonic() + 2 * delay  # the handshake's round trip
    try:
        server = socket.create_connection(("127.0.0.1", upstream_port))
    except OSError:
        client.close()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pipes = [Pipe(client, server, delay, up, window, ready_at),
             Pipe(server, client, delay, down, window, ready_at)]
    threads = [threading.Thread(target=f, daemon=True)
               for p in pipes for f in (p.reader, p.writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--mbit", type=float, default=100.0)
    parser.add_argument("--window", type=int, default=4 << 20)
    args = parser.parse_args()
    rate = args.mbit * 1e6 / 8
    up, down = Link(rate), Link(rate)
    delay = args.rtt_ms / 2000.0
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.replace(tmp, args.port_file)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, args.upstream_port, delay, up, down,
                                             args.window), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
