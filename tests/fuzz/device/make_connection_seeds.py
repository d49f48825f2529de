#!/usr/bin/env python3
"""Writes the hand-made seeds of connection_fuzzer: short sequences of the fd's life (blocking and O_NONBLOCK
round trips, partial reads, a read waiting on a write, close with a command in flight, a lost backend, the
discard timeout, malformed writes).

The fuzzer takes every choice with FuzzedDataProvider.ConsumeIntegralInRange, which reads from the end of the
input, big-endian per value, as few bytes as the range needs; Seq mirrors the fuzzer's order of choices
(connection_fuzzer.cc) and writes the input backwards. Replay one with CONNECTION_FUZZER_TRACE=1 to see its steps.

    tests/fuzz/device/make_connection_seeds.py tests/fuzz/corpus/connection_fuzzer
"""
import os
import sys

OPS = dict(write=0, read=2, poll=4, complete=5, discard=7, close=8, gone=9, notify=10, on_ready=11, open=12)
ERRNOS = dict(ENODEV=0, ECANCELED=1, ETIME=2, EINVAL=3, EIO=4, EPIPE=5, ENOMEM=6)


class Seq:
    def __init__(self, max_command=4096, discard=True, gate=True):
        self.out = []  # in consumption order
        self.conns = 2
        self.queue = 0
        if max_command == 4096:
            self.pick(0, 3, 0)
        else:
            self.pick(0, 3, 3)
            self.pick(0, 8192, max_command)
        self.pick(0, 255, 0 if discard else 1)  # ConsumeBool: true means "never discard"
        self.pick(0, 7, 1 if gate else 0)

    def pick(self, lo, hi, value):
        assert lo <= value <= hi
        span, v, n = hi - lo, value - lo, 0
        while span >> (8 * n):
            n += 1
        self.out += list(v.to_bytes(n, "big")) if n else []

    def flag(self, b):
        self.pick(0, 255, 1 if b else 0)

    def conn(self, c):
        self.pick(0, self.conns - 1, c)

    def op(self, name):
        self.pick(0, 12, OPS[name])

    def write(self, c=0, nonblocking=False, size=12, declared=None, mode=None, max_command=4096):
        self.op("write")
        self.conn(c)
        self.flag(nonblocking)
        if mode is None:
            mode = 0 if declared is None else 1
        self.pick(0, 6, mode)
        if mode == 0:
            self.pick(10, max(10, max_command), size)
        elif mode == 1:
            self.pick(10, max(10, max_command), size)
            self.pick(10, size, declared)
        elif mode == 2:
            self.pick(6, max(6, max_command), size)
            self.pick(1, 0x10000, declared - size)
        elif mode == 3:
            self.pick(6, max(6, max_command), size)
            self.pick(0, 9, declared)
        elif mode == 4:
            self.pick(0, 5, size)
        elif mode == 5:
            self.pick(1, 64, size - max_command)
        self.pick(0, 255, 0x5A)  # filler seed

    def accepted(self):
        self.queue += 1

    def read(self, c=0, max=4096, nonblocking=False):
        self.op("read")
        self.conn(c)
        self.flag(nonblocking)
        if max == 0:
            self.pick(0, 3, 0)
        elif max <= 16:
            self.pick(0, 3, 1)
            self.pick(1, 16, max)
        elif max == 4096:
            self.pick(0, 3, 2)
        else:
            self.pick(0, 3, 3)
            self.pick(0, 1 << 20, max)

    def poll(self, c=0):
        self.op("poll")
        self.conn(c)

    def complete(self, index=0, response=None, errno=None):
        self.op("complete")
        assert self.queue > 0
        self.pick(0, self.queue - 1, index)
        self.queue -= 1
        self.flag(errno is None)
        if errno is None:
            if response == 10:
                self.pick(0, 3, 0)
            elif response == 44:
                self.pick(0, 3, 2)
            elif response <= 64:
                self.pick(0, 3, 1)
                self.pick(0, 64, response)
            else:
                self.pick(0, 3, 3)
                self.pick(0, 8192, response)
            self.pick(0, 255, 0xA5)
        else:
            self.pick(0, 6, ERRNOS[errno])

    def discard(self, c=0, stored=True, ms=0, base="threshold", hours=0):
        self.op("discard")
        self.conn(c)
        if stored:
            self.pick(-5000, 5000, ms)
            self.pick(0, 3, dict(threshold=0, response=1, hours=2, now=3)[base])
            if base == "hours":
                self.pick(-48, 48, hours)

    def close(self, c=0):
        self.op("close")
        self.conn(c)

    def gone(self):
        self.op("gone")

    def notify(self, c=0):
        self.op("notify")
        self.conn(c)

    def on_ready(self, c=0, unset=False):
        self.op("on_ready")
        self.conn(c)
        self.flag(unset)

    def open(self):
        self.op("open")
        self.conns = min(self.conns + 1, 4)

    def bytes(self):
        return bytes(reversed(self.out))


def seeds():
    s = Seq()
    s.on_ready(0)
    s.write(0, size=12); s.accepted()
    s.poll(0)
    s.complete(response=44)
    s.poll(0)
    s.read(0, max=10)
    s.read(0, max=4096)
    s.read(0, max=4096)
    s.poll(0)
    yield "blocking-round-trip-partial-reads", s

    s = Seq()
    s.on_ready(0)
    s.write(0, nonblocking=True, size=14); s.accepted()
    s.write(0, nonblocking=True, size=12)  # EBUSY
    s.complete(errno="EINVAL")
    s.poll(0)
    s.write(0, size=12)  # EBUSY: the error is unread
    s.read(0, nonblocking=True)
    s.read(0, nonblocking=True)
    yield "nonblocking-error-then-eof", s

    s = Seq()
    s.write(0, size=12); s.accepted()
    s.read(0, max=16)  # waits for the write
    s.read(1, max=16)
    s.complete(response=44)
    s.read(0, max=100000)
    yield "read-waits-for-blocking-write", s

    s = Seq()
    s.on_ready(0)
    s.write(0, size=12); s.accepted()
    s.read(0, max=4096)  # waits
    s.close(0)
    s.poll(0)
    s.complete(response=44)
    s.read(0)
    s.write(0)
    s.close(0)
    yield "close-with-command-in-flight", s

    s = Seq()
    s.on_ready(0)
    s.on_ready(1)
    s.write(0, size=12); s.accepted()
    s.complete(response=44)
    s.write(1, size=12); s.accepted()
    s.gone()
    s.notify(0)
    s.notify(1)
    s.poll(0)
    s.poll(1)
    s.complete(errno="EPIPE")
    s.read(0, max=4096)
    s.read(0, max=4096)
    s.poll(0)
    s.write(0)
    s.open()
    yield "backend-gone-keeps-stored-response", s

    s = Seq(discard=True)
    s.on_ready(0)
    s.write(0, size=12); s.accepted()
    s.complete(response=44)
    s.discard(0, ms=-1000)
    s.poll(0)
    s.discard(0, ms=1000)
    s.poll(0)
    s.read(0)
    s.write(0, size=12); s.accepted()
    s.complete(response=10)
    s.discard(0, base="hours", hours=-2)
    s.read(0, max=3)
    s.discard(0, ms=5000)
    yield "discard-timeout", s

    s = Seq()
    s.write(0, size=12); s.accepted()
    s.complete(response=44)
    s.read(0, max=1)
    s.write(0, size=40, declared=12); s.accepted()  # PARTIAL: accepted, the rest dropped
    s.complete(response=2000)
    s.read(0, max=0)
    s.read(0, max=1500)
    s.read(0, max=4096)
    yield "partial-then-new-write", s

    s = Seq(max_command=64)
    s.on_ready(1)
    s.write(1, size=3, mode=4, max_command=64)
    s.write(1, size=20, declared=200, mode=2, max_command=64)
    s.write(1, size=20, declared=9, mode=3, max_command=64)
    s.write(1, size=70, mode=5, max_command=64)
    s.write(1, size=64, max_command=64); s.accepted()
    s.write(1, size=64, max_command=64)
    s.complete(errno="ECANCELED")
    s.poll(1)
    s.read(1)
    yield "malformed-writes", s

    s = Seq(gate=False)
    s.write(0, nonblocking=True, size=12); s.accepted()
    s.write(1, size=12); s.accepted()
    s.complete(index=1, errno="ENODEV")
    s.complete(index=0, response=0)
    s.poll(0)
    s.read(0)
    s.open()
    s.poll(2)
    yield "no-gate-enodev-and-empty-response", s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/connection_fuzzer"
    os.makedirs(out, exist_ok=True)
    for name, s in seeds():
        with open(os.path.join(out, "seq-" + name), "wb") as f:
            f.write(s.bytes())
        print(f"{out}/seq-{name}: {len(s.out)} bytes")


if __name__ == "__main__":
    main()
