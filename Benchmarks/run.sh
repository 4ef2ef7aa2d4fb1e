#!/usr/bin/env bash
# udpd's benchmark: one command, every comparison in the same invocation, interleaved in rounds.
#
#   Benchmarks/run.sh            full run: 10 s per measurement, 3 rounds, medians (about 5 minutes)
#   Benchmarks/run.sh --quick    2 s per measurement, 1 round (CI runs this to keep the harness working)
#   options: --rounds N, --duration SECONDS, --window N, --sockets N, --out DIR, --no-build
#
# Measures, against servers on probed free ports of this machine (loopback traffic only):
#   ref-echo      the C reference echo server (Benchmarks/reference/echo_reference.c, recvmmsg/sendmmsg, pktinfo)
#   udpd-echo     udpd's echo handler with the same number of threads
#   nginx-1w/2w   nginx's stream UDP proxy (1 and 2 workers) in front of a C reference backend, when nginx and
#                 libnginx-mod-stream are installed
#   ref-forward   the C reference forwarder (Benchmarks/reference/forward_reference.c: sessions with connected
#                 upstream sockets, recvmmsg, replies gathered into one sendmmsg) in front of the same backend: the
#                 floor of CPU per forwarded request on this machine
#   udpd-forward  udpd's forward handler in front of the same backend, when this udpd accepts `handler: forward`
#   alloc-*       heap allocations per request (udpd echo and forward, the C reference), with
#                 Benchmarks/reference/malloc_count.so preloaded
#   control       1,000 services: load to ready, one-change reload, status latency, RSS
#   tcp-idle      10,000 idle TCP connections (1,000 with --quick): udpd's extra resident memory
# and prints Markdown tables with medians and the ratios the targets are stated in (BENCHMARKS.md).
#
# Exit status: 0 when everything that could be measured was measured, whatever the numbers; non-zero when the
# harness or a server under test failed. A missing nginx or forward handler is reported and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
rounds=3
duration=10
warmup=1
window=64
sockets=16
build=1
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; rounds=1; duration=2; warmup=0.5 ;;
        --rounds) rounds="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        --window) window="$2"; shift ;;
        --sockets) sockets="$2"; shift ;;
        --out) out="$2"; shift ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

work=$(mktemp -d /tmp/udpd-bench-XXXXXX)
[ -n "$out" ] || out="$work"
# Every server this script starts is recorded here and killed on exit, however the script ends.
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$out" != "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The build `make` installs (see the Makefile): release, the Swift runtime linked in, its own scratch path.
release=(-c release --static-swift-stdlib -Xswiftc -Osize --scratch-path .build-static)
if [ "$build" = 1 ]; then
    # Every product in release mode: udpd, udpctl (to wait for readiness) and udpd-bench; no test targets.
    echo "bench: swift build ${release[*]}"
    swift build "${release[@]}" > "$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
    tail -n 1 "$work/build.log"
fi
bin=$(swift build "${release[@]}" --show-bin-path)
for product in udpd udpctl udpd-bench; do
    [ -x "$bin/$product" ] || { echo "bench: $bin/$product is missing (swift build ${release[*]})" >&2; exit 1; }
done

mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

cc -O2 -Wall -pthread -o "$work/echo_reference" Benchmarks/reference/echo_reference.c
cc -O2 -Wall -pthread -o "$work/forward_reference" Benchmarks/reference/forward_reference.c
cc -O2 -Wall -shared -fPIC -o "$work/malloc_count.so" Benchmarks/reference/malloc_count.c

# The address clients send to: 127.0.0.2 makes wildcard servers pick the reply source themselves (pktinfo);
# 127.0.0.1 would let the kernel's default choice pass by luck.
target_address=127.0.0.2

# start_reference NAME THREADS [PROGRAM [OPTIONS...]]: starts a C reference (echo_reference unless PROGRAM is
# given) on a free port; sets ref_port and ref_pid.
start_reference() {
    local name=$1 threads=$2 program=${3:-echo_reference} file="$work/$1.out"
    shift $(($# < 3 ? $# : 3))
    : > "$file"
    "$work/$program" -t "$threads" "$@" 0 > "$file" &
    ref_pid=$!
    pids+=("$ref_pid")
    for _ in $(seq 100); do
        ref_port=$(awk '/^port /{print $2}' "$file")
        [ -n "$ref_port" ] && return 0
        sleep 0.05
    done
    echo "bench: the C reference $name did not start" >&2
    exit 1
}

# wait_udpd SOCKET PID: waits until udpd answers on its control socket.
wait_udpd() {
    local socket=$1 pid=$2
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || { echo "bench: udpd exited early:" >&2; cat "$work"/udpd*.log >&2; exit 1; }
        "$bin/udpctl" -s "$socket" status > /dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "bench: udpd did not answer on $socket" >&2
    exit 1
}

# measure LABEL ROUND PORT PID [load options...]: one load run, appended to the results.
measure() {
    local label=$1 round=$2 port=$3 pid=$4
    shift 4
    "$bin/udpd-bench" load --target "$target_address:$port" --pid "$pid" --label "$label" --round "$round" \
        --duration "$duration" --warmup "$warmup" --window "$window" --sockets "$sockets" "$@" >> "$results"
}

# What this udpd implements decides what is compared. `--check` is not enough: a key or handler may be parsed
# before it is implemented, so each probe starts udpd for real and asks it for its status.
mapfile -t probe_ports < <("$bin/udpd-bench" ports --count 1)
# udpd_runs NAME YAML-SERVICE-LINES: 0 when udpd starts and serves that service; its last error in probe_error.
udpd_runs() {
    local name=$1 body=$2 config="$work/probe-$1.yaml" socket="$work/probe-$1.sock" pid
    printf 'log:\n  level: warning\nservices:\n  probe:\n%s\n' "$body" > "$config"
    "$bin/udpd" -c "$config" --control-socket "$socket" > "$work/probe-$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            probe_error=$(tail -n 1 "$work/probe-$name.log")
            return 1
        fi
        if "$bin/udpctl" -s "$socket" status > /dev/null 2>&1; then
            kill "$pid"
            wait "$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.05
    done
    kill "$pid"
    probe_error="udpd did not become ready"
    return 1
}
probe_service="    handler: echo\n    udp: ${probe_ports[0]}\n    bind: [127.0.0.1]"
if udpd_runs workers "$(printf "$probe_service\n    workers: 2")"; then
    threads=$(nproc)
    workers_line="    workers: $threads"
    echo "bench: udpd accepts 'workers:'; udpd and the C reference both run $threads threads"
else
    threads=1
    workers_line=""
    echo "bench: this udpd does not run 'workers:' yet (one thread per socket); the C reference runs 1 thread too"
fi
forward_service="    handler: forward\n    udp: ${probe_ports[0]}\n    bind: [127.0.0.1]\n    upstream: 127.0.0.1:9"
if udpd_runs forward "$(printf "$forward_service")"; then
    have_forward=1
else
    have_forward=0
    echo "bench: skipping udpd forward: this udpd does not run a forward service yet ($probe_error)"
fi
have_nginx=0
nginx_module=/usr/lib/nginx/modules/ngx_stream_module.so
if command -v nginx > /dev/null 2>&1 && [ -f "$nginx_module" ]; then
    have_nginx=1
else
    echo "bench: skipping nginx: install nginx and libnginx-mod-stream (Debian) to compare with its stream proxy"
fi

start_reference ref-echo "$threads"
ref_echo_port=$ref_port ref_echo_pid=$ref_pid
start_reference backend "$threads"
backend_port=$ref_port
start_reference ref-forward "$threads" forward_reference -u "$backend_port"
ref_forward_port=$ref_port ref_forward_pid=$ref_pid
mapfile -t ports < <("$bin/udpd-bench" ports --count 7)

udpd_config="$work/udpd.yaml"
{
    printf 'log:\n  level: warning\nservices:\n'
    printf '  echo:\n    handler: echo\n    udp: %s\n    family: ipv4\n%s\n' "${ports[0]}" "$workers_line"
    if [ "$have_forward" = 1 ]; then
        printf '  forward:\n    handler: forward\n    udp: %s\n    family: ipv4\n    upstream: 127.0.0.1:%s\n%s\n' \
            "${ports[1]}" "$backend_port" "$workers_line"
    fi
} | grep -v '^$' > "$udpd_config"
"$bin/udpd" -c "$udpd_config" --control-socket "$work/udpd.sock" > "$work/udpd.log" 2>&1 &
udpd_pid=$!
pids+=("$udpd_pid")
wait_udpd "$work/udpd.sock" "$udpd_pid"

# start_nginx WORKERS PORT: nginx's stream proxy to the backend; sets nginx_pid (the master; workers are children).
start_nginx() {
    local workers=$1 port=$2 dir="$work/nginx-$1"
    mkdir -p "$dir"
    cat > "$dir/nginx.conf" <<EOF
load_module $nginx_module;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
stream {
    server {
        listen $port udp reuseport;
        proxy_pass 127.0.0.1:$backend_port;
        proxy_timeout 10s;
    }
}
EOF
    nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' > "$dir/stdout.log" 2>&1 &
    nginx_pid=$!
    pids+=("$nginx_pid")
    for _ in $(seq 100); do
        [ "$(cat "/proc/$nginx_pid/task/"*/children 2>/dev/null | wc -w)" -ge "$workers" ] && return 0
        kill -0 "$nginx_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench: nginx with $workers workers did not start:" >&2
    cat "$dir/error.log" "$dir/stdout.log" >&2
    exit 1
}
if [ "$have_nginx" = 1 ]; then
    start_nginx 1 "${ports[2]}"; nginx1_pid=$nginx_pid
    start_nginx 2 "${ports[3]}"; nginx2_pid=$nginx_pid
fi

echo "bench: $rounds round(s) of ${duration}s measurements after ${warmup}s warm-up; window $window over $sockets" \
    "connected sockets, 64-byte requests, to $target_address; results in $results"
for round in $(seq "$rounds"); do
    measure ref-echo "$round" "$ref_echo_port" "$ref_echo_pid"
    measure udpd-echo "$round" "${ports[0]}" "$udpd_pid"
    if [ "$have_nginx" = 1 ]; then
        measure nginx-1w "$round" "${ports[2]}" "$nginx1_pid" --children
        measure nginx-2w "$round" "${ports[3]}" "$nginx2_pid" --children
    fi
    measure ref-forward "$round" "$ref_forward_port" "$ref_forward_pid"
    if [ "$have_forward" = 1 ]; then
        measure udpd-forward "$round" "${ports[1]}" "$udpd_pid"
    fi
done

# Heap allocations per request: the same servers again, with the malloc counter preloaded.
alloc_duration=$([ "$quick" = 1 ] && echo 1 || echo 3)
alloc_port=${ports[4]}
alloc_forward_port=${ports[5]}
alloc_proxy_port=${ports[6]}
{
    printf 'log:\n  level: warning\nservices:\n'
    printf '  echo:\n    handler: echo\n    udp: %s\n    family: ipv4\n%s\n' "$alloc_port" "$workers_line"
    if [ "$have_forward" = 1 ]; then
        printf '  forward:\n    handler: forward\n    udp: %s\n    family: ipv4\n    upstream: 127.0.0.1:%s\n%s\n' \
            "$alloc_forward_port" "$backend_port" "$workers_line"
        # The same with a PROXY v2 header before each request; the backend echoes it back, 28 bytes before the reply.
        printf '  forward-proxy:\n    handler: forward\n    udp: %s\n    family: ipv4\n    upstream: 127.0.0.1:%s\n' \
            "$alloc_proxy_port" "$backend_port"
        printf '    proxy-protocol: v2\n%s\n' "$workers_line"
    fi
} | grep -v '^$' > "$work/alloc.yaml"
MALLOC_COUNT_FILE="$work/udpd.malloc" LD_PRELOAD="$work/malloc_count.so" \
    "$bin/udpd" -c "$work/alloc.yaml" --control-socket "$work/alloc.sock" > "$work/udpd-alloc.log" 2>&1 &
alloc_pid=$!
pids+=("$alloc_pid")
wait_udpd "$work/alloc.sock" "$alloc_pid"
duration=$alloc_duration measure alloc-udpd-echo 1 "$alloc_port" "$alloc_pid" --malloc-count-file "$work/udpd.malloc"
if [ "$have_forward" = 1 ]; then
    # Sessions are opened during the warm-up, so this counts the steady state of known clients.
    duration=$alloc_duration measure alloc-udpd-forward 1 "$alloc_forward_port" "$alloc_pid" \
        --malloc-count-file "$work/udpd.malloc"
    duration=$alloc_duration measure alloc-udpd-forward-proxy 1 "$alloc_proxy_port" "$alloc_pid" \
        --malloc-count-file "$work/udpd.malloc" --reply-prefix 28
fi
kill "$alloc_pid"

: > "$work/ref-alloc.out"
MALLOC_COUNT_FILE="$work/ref.malloc" LD_PRELOAD="$work/malloc_count.so" \
    "$work/echo_reference" -t "$threads" 0 > "$work/ref-alloc.out" &
ref_alloc_pid=$!
pids+=("$ref_alloc_pid")
for _ in $(seq 100); do
    ref_alloc_port=$(awk '/^port /{print $2}' "$work/ref-alloc.out")
    [ -n "$ref_alloc_port" ] && break
    sleep 0.05
done
duration=$alloc_duration measure alloc-ref-echo 1 "$ref_alloc_port" "$ref_alloc_pid" \
    --malloc-count-file "$work/ref.malloc"

echo "bench: control plane with 1,000 services"
if [ "$quick" = 1 ]; then control_args=(--status-requests 5 --reloads 2); else control_args=(); fi
"$bin/udpd-bench" control --udpd "$bin/udpd" --services 1000 "${control_args[@]}" >> "$results"

echo "bench: idle TCP connections"
if [ "$quick" = 1 ]; then idle_connections=1000; else idle_connections=10000; fi
python3 Benchmarks/tcp_idle.py "$bin/udpd" "$idle_connections" >> "$results"

echo
echo "Machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), Linux $(uname -r);" \
    "udpd $(git describe --always --dirty 2>/dev/null || echo unknown)" \
    "$([ "$have_nginx" = 1 ] && nginx -v 2>&1 | sed 's/.*version: //'); threads per server: $threads"
echo
"$bin/udpd-bench" report "$results"
