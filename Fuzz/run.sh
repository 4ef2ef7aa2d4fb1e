#!/usr/bin/env bash
# Builds the libFuzzer drivers (with AddressSanitizer) and runs each for N seconds (default 60) on its seed corpus
# in Fuzz/corpus/<target>/, writing new inputs to a scratch corpus. A crash stops the run: its input is left as
# Fuzz/crash-<target>-*; fix the bug, then move the input into Fuzz/regressions/<target>/ so that `swift test`
# replays it forever (Tests/UDPDServicesTests/FuzzRegressionTests.swift).
#
#   Fuzz/run.sh [seconds] [target...]     targets: config control-request kerberos-frame der
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config control-request kerberos-frame der)

swift build -c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
    >/dev/null
bin=$(swift build -c release --scratch-path .build-fuzz --show-bin-path)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for target in "${targets[@]}"; do
    case "$target" in
        config) driver=FuzzConfig ;;
        control-request) driver=FuzzControlRequest ;;
        kerberos-frame) driver=FuzzKerberosFrame ;;
        der) driver=FuzzDER ;;
        *) echo "fuzz: unknown target '$target'" >&2; exit 2 ;;
    esac
    mkdir -p "$work/$target"
    echo "fuzz: $target for ${seconds}s"
    "$bin/$driver" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="crash-$target-" -print_final_stats=1 \
        "$work/$target" "corpus/$target" "regressions/$target" 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)" || true
    if ls crash-"$target"-* >/dev/null 2>&1; then
        echo "fuzz: $target crashed; inputs: $(ls crash-"$target"-*)" >&2
        exit 1
    fi
done
echo "fuzz: no crash"
