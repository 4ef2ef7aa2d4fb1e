#!/usr/bin/env bash
# How long a live upgrade takes, and how long a client waits for a reply during one.
#
#   Benchmarks/upgrade.sh [SERVICES ...]     default: 1 1000; binaries from $BIN (default .build/debug)
#
# For each count: N echo services on N free UDP ports of 127.0.0.1, one connected client asking service 1 in a loop
# (one request at a time), 5 upgrades (`udpctl upgrade`, timed from the command to its answer, which comes when
# the new udpd serves), then the client's longest wait between two replies and its losses. Loopback only; every
# process started here is stopped at the end. Numbers are for BENCHMARKS.md; nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/debug}
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1 1000)
work=$(mktemp -d /tmp/udpd-upgrade-bench-XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    pkill -9 -f "$work/services.yaml" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for count in "${counts[@]}"; do
    # Free ports below the ephemeral range, probed now.
    python3 - "$count" "$work/services.yaml" <<'EOF'
import socket, sys
count, path = int(sys.argv[1]), sys.argv[2]
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ports, port = [], 20000
while len(ports) < count and port < low:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port)); ports.append(port)
    except OSError:
        pass
    s.close(); port += 1
with open(path, "w") as f:
    f.write("services:\n")
    for i, p in enumerate(ports):
        f.write("  echo-%d: {handler: echo, udp: %d, bind: [127.0.0.1], workers: 1}\n" % (i, p))

EOF
    first=$(sed -n '2s/.*udp: \([0-9]*\).*/\1/p' "$work/services.yaml")
    "$BIN/udpd" -c "$work/services.yaml" --control-socket "$work/control.sock" 2>"$work/udpd.log" &
    pids+=($!)
    for _ in $(seq 100); do "$BIN/udpctl" -s "$work/control.sock" status >/dev/null 2>&1 && break; sleep 0.1; done
    python3 - "$first" "$work/client" <<'EOF' &
import socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.connect(("127.0.0.1", port))
answered = lost = 0; longest = 0.0; last = time.monotonic(); end = last + 60; seq = 0
while time.monotonic() < end:
    try:
        open(out + ".stop").close(); break
    except OSError:
        pass
    seq += 1; request = b"%d" % seq; s.send(request)
    try:
        while True:
            reply = s.recv(64)
            if reply == request: break
        now = time.monotonic(); longest = max(longest, now - last); last = now; answered += 1
    except OSError:
        lost += 1
open(out, "w").write("%d replies, %d lost, longest pause %.1f ms\n" % (answered, lost, longest * 1000))
EOF
    client=$!
    sleep 0.5
    for round in 1 2 3 4 5; do
        start=$(date +%s%N)
        new=$("$BIN/udpctl" -s "$work/control.sock" upgrade)
        end=$(date +%s%N)
        pids+=("$new")
        echo "$count services: upgrade $round: $(( (end - start) / 1000000 )) ms to pid $new serving"
        sleep 0.5
    done
    touch "$work/client.stop"; wait "$client" || true
    echo "$count services: client during 5 upgrades: $(cat "$work/client")"
    rm -f "$work/client.stop" "$work/client"
    "$BIN/udpctl" -s "$work/control.sock" status >/dev/null && kill -TERM "$new"
    for _ in $(seq 200); do kill -0 "$new" 2>/dev/null || break; sleep 0.1; done
done
