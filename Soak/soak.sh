#!/usr/bin/env bash
# Soak test: udpd under echo traffic (direct and through a forward service), a reload every second between two
# configurations, TCP connection churn, bursts of malformed datagrams, garbage TCP and garbage control requests
# and, as root, addresses added and removed in a network namespace of its own. Bounded: --minutes N (default 10;
# CI uses --seconds 45).
#
# Passes when, at the end, udpd still answers, the unchanged echo and forward listeners lost no datagram, echo
# answered every TCP round trip, and its open descriptors and resident memory are within 10% of where they stood
# after the warm-up (the first tenth of the run, at least 5 s: allocator caches and thread stacks settle then).
#
#   Soak/soak.sh [--minutes N | --seconds N]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) seconds=$(( $2 * 60 )); shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        *) echo "usage: $0 [--minutes N | --seconds N]" >&2; exit 2 ;;
    esac
done

# The binaries `make install` installs and Benchmarks/run.sh measures (see the Makefile).
release=(-c release --static-swift-stdlib -Xswiftc -Osize --scratch-path .build-static)
swift build "${release[@]}" --product udpd >/dev/null
swift build "${release[@]}" --product udpctl >/dev/null
bin=$(swift build "${release[@]}" --show-bin-path)
work=$(mktemp -d /tmp/udpd-soak.XXXXXX)
netns=""
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -n "$netns" ] && ip netns delete "$netns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

run=()
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
    netns="udpd-soak-$$"
    ip netns add "$netns"
    ip -n "$netns" link set lo up
    run=(ip netns exec "$netns")
    echo "soak: in network namespace $netns"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
echo_port=$(free_port); discard_port=$(free_port); extra_port=$(free_port); forward_port=$(free_port)
upstream_port=$(free_port)
control="$work/control.sock"
cat > "$work/a.yaml" <<YAML
services:
  echo:
    handler: echo
    udp: $echo_port
    tcp: $echo_port
    idle-timeout: 5s
  discard:
    handler: discard
    udp: $discard_port
    tcp: $discard_port
    max-datagram: 4KiB
  forward:
    handler: forward
    udp: $forward_port
    upstream: 127.0.0.1:$upstream_port
YAML
cp "$work/a.yaml" "$work/b.yaml"
cat >> "$work/b.yaml" <<YAML
  extra:
    handler: echo
    udp: $extra_port
    tcp: $extra_port
    rate-limit: {per-source: 100/s}
YAML
cp "$work/a.yaml" "$work/services.yaml"

# The forward's upstream is an echo of a second udpd: udpd refuses to forward into one of its own listeners (a loop).
cat > "$work/upstream.yaml" <<YAML
services:
  upstream-echo:
    handler: echo
    udp: $upstream_port
    bind: [127.0.0.1]
YAML
"${run[@]}" "$bin/udpd" -c "$work/upstream.yaml" --control-socket "$work/upstream.sock" 2>"$work/upstream.log" &
pids+=($!)
"${run[@]}" "$bin/udpd" -c "$work/services.yaml" --control-socket "$control" 2>"$work/udpd.log" &
pids+=($!)
udpd_pid=""
for _ in $(seq 100); do
    "${run[@]}" "$bin/udpctl" -s "$control" status >/dev/null 2>&1 && break
    sleep 0.1
done
udpd_pid=$(pgrep -f -n -- "--control-socket $control" || true)
[ -n "$udpd_pid" ] || { echo "soak: udpd did not start"; cat "$work/udpd.log"; exit 1; }

fds() { ls "/proc/$udpd_pid/fd" | wc -l; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$udpd_pid/status"; }

"${run[@]}" python3 Soak/traffic.py --echo "$echo_port" --discard "$discard_port" --forward "$forward_port" --control "$control" \
    --seconds "$seconds" >"$work/traffic.json" &
traffic_pid=$!
pids+=($traffic_pid)

warmup=$(( seconds / 10 > 5 ? seconds / 10 : 5 ))
start=$(date +%s)
reloads=0; failed_reloads=0; base_fds=""; base_rss=""
while kill -0 "$traffic_pid" 2>/dev/null; do
    now=$(date +%s)
    if [ -z "$base_fds" ] && [ $(( now - start )) -ge "$warmup" ]; then
        base_fds=$(fds); base_rss=$(rss)
        echo "soak: after warm-up: $base_fds descriptors, $base_rss KiB resident"
    fi
    if [ $(( reloads % 2 )) = 0 ]; then cp "$work/b.yaml" "$work/services.yaml"; else cp "$work/a.yaml" "$work/services.yaml"; fi
    "${run[@]}" "$bin/udpctl" -s "$control" reload >/dev/null 2>&1 || failed_reloads=$(( failed_reloads + 1 ))
    reloads=$(( reloads + 1 ))
    [ $(( reloads % 10 )) = 0 ] && echo "soak: ${reloads} s: $(fds) descriptors, $(rss) KiB resident"
    if [ -n "$netns" ]; then
        octet=$(( reloads % 200 + 1 ))
        ip -n "$netns" addr add "192.0.2.$octet/32" dev lo 2>/dev/null || true
        ip -n "$netns" addr del "192.0.2.$(( (reloads + 100) % 200 + 1 ))/32" dev lo 2>/dev/null || true
    fi
    sleep 1
done
wait "$traffic_pid" || true
sleep 6  # idle-timeout 5 s: churned connections left open by garbage clients close

end_fds=$(fds); end_rss=$(rss)
answer=$(echo soak-end | "${run[@]}" python3 -c "
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b'soak-end', ('127.0.0.1', $echo_port))
print(s.recv(64).decode())" 2>&1 || true)
echo "soak: traffic $(cat "$work/traffic.json")"
echo "soak: $reloads reloads ($failed_reloads failed); descriptors $base_fds -> $end_fds; RSS $base_rss -> $end_rss KiB"

status=0
python3 - "$work/traffic.json" <<'PY' || status=1
import json, sys
stats = json.load(open(sys.argv[1]))
problems = []
if stats.get("udp_lost", 1) != 0: problems.append("the unchanged echo listener lost %s datagrams" % stats.get("udp_lost"))
if stats.get("udp_sent", 0) == 0: problems.append("no steady traffic was sent")
if stats.get("fwd_lost", 1) != 0: problems.append("the unchanged forward listener lost %s datagrams" % stats.get("fwd_lost"))
if stats.get("fwd_sent", 0) == 0: problems.append("no traffic was sent through the forward service")
if stats.get("tcp_failed", 1) != 0: problems.append("%s TCP round trips failed" % stats.get("tcp_failed"))
for p in problems: print("soak: FAIL: " + p)
sys.exit(1 if problems else 0)
PY
[ "$answer" = "soak-end" ] || { echo "soak: FAIL: udpd does not answer at the end ($answer)"; status=1; }
[ "$failed_reloads" = 0 ] || { echo "soak: FAIL: $failed_reloads reloads failed"; status=1; }
within() { python3 -c "import sys; b, e = float($1), float($2); sys.exit(0 if e <= b * 1.1 + 2 else 1)"; }
within "$base_fds" "$end_fds" || { echo "soak: FAIL: descriptors grew from $base_fds to $end_fds"; status=1; }
within "$base_rss" "$end_rss" || { echo "soak: FAIL: RSS grew from $base_rss to $end_rss KiB"; status=1; }
kill -0 "$udpd_pid" || { echo "soak: FAIL: udpd died"; status=1; }
[ "$status" = 0 ] && echo "soak: 1 passed, 0 failed" || { echo "soak: udpd log tail:"; tail -20 "$work/udpd.log"; echo "soak: 0 passed, 1 failed"; }
exit "$status"
