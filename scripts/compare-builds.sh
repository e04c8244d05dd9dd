#!/usr/bin/env bash
# scripts/compare-builds.sh — measure two builds of choreo side by side, on the same machine at the same time.
#
#   scripts/compare-builds.sh OLD NEW [RATE] [SECONDS] [ROUNDS]
#
# OLD and NEW are choreo binaries (e.g. `go build -o /tmp/new ./cmd/choreo` on each commit). Each round starts
# `OLD run` and `NEW run` at once, each with its own data directory (so its own embedded Kafka and Postgres),
# loads each with `NEW load -rate RATE` over 20 products for SECONDS, and prints the CPU each stack used
# (its Go process and its Postgres cluster, % of one core, sampled from /proc over the middle of the run)
# and each load's latency. Rounds alternate which build takes the first ports.
#
# Why side by side: on a shared virtual machine the cost of the same work drifts by a factor of two within
# minutes, so runs of OLD and then NEW mostly measure the drift. Two stacks running at the same time see
# the same machine; a change shows as a difference that keeps its sign over the rounds. Keep RATE low
# enough that the two loads together do not saturate the machine (p50 near the unloaded one).
#
# Defaults: RATE 50 orders/s per stack, SECONDS 30, ROUNDS 4. Needs what `choreo run` needs, and curl.
set -euo pipefail

old=$(realpath "${1:?usage: compare-builds.sh OLD NEW [RATE] [SECONDS] [ROUNDS]}")
new=$(realpath "${2:?usage: compare-builds.sh OLD NEW [RATE] [SECONDS] [ROUNDS]}")
rate=${3:-50}
secs=${4:-30}
rounds=${5:-4}
((secs >= 15)) || { echo "SECONDS must be at least 15" >&2; exit 2; }

work=$(mktemp -d)
chmod 755 "$work" # the embedded Postgres runs as an unprivileged user when we are root
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ticks PID: CPU clock ticks (user + system) of PID, or 0 once it is gone.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# stack_ticks NAME: ticks of the stack's Go process, and of its Postgres cluster (postmaster and children).
stack_ticks() {
	local go_pid pm pg=0 p
	go_pid=$(cat "$work/$1.pid")
	pm=$(head -1 "$work/$1/pg/postmaster.pid" 2>/dev/null || echo)
	if [[ -n $pm ]]; then
		for p in $pm $(pgrep -P "$pm" || true); do pg=$((pg + $(ticks "$p"))); done
	fi
	echo "$(ticks "$go_pid") $pg"
}

start_stack() { # NAME BINARY: starts `BINARY run`; records its pid and ports
	local name=$1 bin=$2 http kafka
	http=$(free_port)
	kafka=$(free_port)
	mkdir -p "$work/$name"
	chmod 755 "$work/$name"
	HTTP_ADDR=127.0.0.1:$http KAFKA_EMBEDDED_ADDR=127.0.0.1:$kafka DATA_DIR=$work/$name \
		"$bin" run >"$work/$name.log" 2>&1 &
	pids+=($!)
	echo $! >"$work/$name.pid"
	echo "$http $kafka" >"$work/$name.ports"
}

wait_ready() { # NAME
	local http
	read -r http _ <"$work/$1.ports"
	for _ in $(seq 1 240); do
		curl -sf "127.0.0.1:$http/readyz" >/dev/null && return 0
		sleep 0.5
	done
	echo "$1 did not become ready; its log: $work/$1.log" >&2
	tail -20 "$work/$1.log" >&2
	exit 1
}

hz=$(getconf CLK_TCK)
diffs=()
for round in $(seq 1 "$rounds"); do
	if ((round % 2)); then order=(old new); else order=(new old); fi
	echo "round $round/$rounds: $rate orders/s each for ${secs}s (${order[0]} started first)" >&2
	for name in "${order[@]}"; do
		rm -rf "${work:?}/$name"
		if [[ $name == old ]]; then start_stack old "$old"; else start_stack new "$new"; fi
	done
	for name in old new; do wait_ready "$name"; done
	sleep 2
	loads=()
	for name in old new; do
		read -r http kafka <"$work/$name.ports"
		"$new" load -url "http://127.0.0.1:$http" -kafka-brokers "127.0.0.1:$kafka" -rate "$rate" \
			-duration "${secs}s" -products 20 -hot-share 0 -chart '' >"$work/$name.load" 2>&1 &
		loads+=($!)
	done
	sleep 5
	read -r old_go0 old_pg0 < <(stack_ticks old)
	read -r new_go0 new_pg0 < <(stack_ticks new)
	window=$((secs - 10))
	sleep "$window"
	read -r old_go1 old_pg1 < <(stack_ticks old)
	read -r new_go1 new_pg1 < <(stack_ticks new)
	wait "${loads[@]}" || true
	for name in old new; do
		if [[ $name == old ]]; then g=$((old_go1 - old_go0)) p=$((old_pg1 - old_pg0)); else g=$((new_go1 - new_go0)) p=$((new_pg1 - new_pg0)); fi
		awk -v n="$name" -v g="$g" -v p="$p" -v t="$window" -v hz="$hz" \
			'BEGIN { printf "  %-3s CPU %% of a core: Go %3.0f, Postgres %3.0f, both %3.0f", n, g/hz/t*100, p/hz/t*100, (g+p)/hz/t*100 }'
		echo " | $(grep -ao 'finished [0-9]* ([0-9.]*%' "$work/$name.load" | head -1)) $(grep -a 'latency' "$work/$name.load" | sed 's/.*event: //')"
	done
	# new minus old, in points of a core, for the summary
	diffs+=("$(awk -v og=$((old_go1 - old_go0)) -v op=$((old_pg1 - old_pg0)) -v ng=$((new_go1 - new_go0)) -v np=$((new_pg1 - new_pg0)) \
		-v t="$window" -v hz="$hz" 'BEGIN { f = 100 / hz / t; printf "%.1f %.1f %.1f", (ng-og)*f, (np-op)*f, (ng+np-og-op)*f }')")
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; done
	pids=()
done
# Per round, NEW minus OLD in points of one core; a change is its sign holding over the rounds.
printf '%s\n' "${diffs[@]}" | awk '
	{ for (i = 1; i <= 3; i++) { sum[i] += $i; if ($i < 0) less[i]++; d[i] = d[i] sprintf(" %+.1f", $i) } }
	END {
		split("Go,Postgres,both", what, ",")
		print "new minus old, points of a core per round (negative: new uses less):"
		for (i = 1; i <= 3; i++)
			printf "  %-8s %s  (mean %+.1f; lower in %d of %d rounds)\n", what[i], d[i], sum[i] / NR, less[i], NR
	}'
