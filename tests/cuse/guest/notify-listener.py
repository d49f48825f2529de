#!/usr/bin/python3
# A stand-in for systemd's notification socket: binds an AF_UNIX datagram socket at PATH and appends every
# datagram to LOG, one line per assignment, with "node=yes|no" after READY=1 (whether NODE existed when
# READY=1 arrived). Runs until killed.
# Usage: notify-listener.py PATH LOG NODE
import os
import socket
import sys

path, log, node = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(log, "a", buffering=1) as out:
    out.write("LISTENING\n")
    while True:
        data = s.recv(4096).decode(errors="replace")
        for line in data.split("\n"):
            if line == "READY=1":
                line += " node=" + ("yes" if os.path.exists(node) else "no")
            out.write(line + "\n")
