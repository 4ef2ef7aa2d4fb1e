#!/usr/bin/env python3
"""Opens N idle TCP connections to a udpd echo service and reports udpd's extra resident memory.

Usage: tcp_idle.py UDPD N  (run by Benchmarks/run.sh; loopback only; bounded by N and by 10 s per connect)
Prints one JSON line labelled tcp-idle: RSS before and after, the extra MiB, bytes per connection, and how long
opening them took. udpd and every connection are closed on the way out.
"""
import os, socket, subprocess, sys, time, tempfile, json

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1])

udpd, count = sys.argv[1], int(sys.argv[2])
work = tempfile.mkdtemp(prefix="udpd-tcpidle-")
port = free_port()
config = os.path.join(work, "tcp.yaml")
open(config, "w").write(f"services:\n  echo:\n    handler: echo\n    tcp: {port}\n    bind: [127.0.0.1]\n"
                        f"    max-connections: {count + 100}\n    max-connections-per-source: {count + 100}\n"
                        f"    idle-timeout: 10m\n")
sock = os.path.join(work, "c.sock")
proc = subprocess.Popen([udpd, "-c", config, "--control-socket", sock], stderr=open(os.path.join(work, "log"), "w"))
conns = []
try:
    deadline = time.time() + 20
    while not os.path.exists(sock) and time.time() < deadline: time.sleep(0.02)
    time.sleep(0.3)
    before = rss_kib(proc.pid)
    start = time.time()
    for i in range(count):
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        conns.append(c)
    # one round trip on the last connection proves the daemon took them all
    conns[-1].sendall(b"x"); assert conns[-1].recv(1) == b"x"
    time.sleep(1.0)
    after = rss_kib(proc.pid)
    print(json.dumps({"label": "tcp-idle", "connections": count, "rss_before_kib": before, "rss_after_kib": after,
                      "extra_mib": round((after - before) / 1024, 1),
                      "bytes_per_connection": round((after - before) * 1024 / count),
                      "open_seconds": round(time.time() - start, 2)}))
finally:
    for c in conns: c.close()
    proc.terminate(); proc.wait(timeout=20)
