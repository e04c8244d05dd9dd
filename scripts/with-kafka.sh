#!/usr/bin/env bash
# scripts/with-kafka.sh CMD [ARGS...] — run CMD against a throwaway real Kafka broker.
#
# Starts a single-node KRaft broker (scripts/kafka.sh) in a new temp dir, exports
#   KAFKA_BROKERS=127.0.0.1:PORT   where the broker listens
#   CHOREO_KAFKA_DIR=DIR           so a test can simulate an outage: scripts/kafka.sh restart "$CHOREO_KAFKA_DIR"
#   CHOREO_KAFKA_SH=PATH           absolute path of scripts/kafka.sh, for that restart from any working dir
# runs CMD, always stops the broker and removes the dir (also on failure or Ctrl-C), and exits with CMD's status.
# Set CHOREO_KEEP_KAFKA_DIR=1 to keep the dir (data + logs/server.log) for a post-mortem.
#
# Example: scripts/with-kafka.sh go test -race -count=1 ./...
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_SH="$SCRIPT_DIR/kafka.sh"

if [[ $# -eq 0 ]]; then
  echo "usage: scripts/with-kafka.sh CMD [ARGS...]" >&2
  exit 2
fi

log() { printf 'with-kafka.sh: %s\n' "$*" >&2; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/choreo-kafka.XXXXXX")"
status=0

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local rc=$?
  [[ "$status" -ne 0 ]] || status=$rc
  # A second signal during cleanup must not leave the broker running.
  trap '' INT TERM
  "$KAFKA_SH" stop "$dir" || true
  if [[ "$status" -ne 0 && -f "$dir/logs/server.log" ]]; then
    local errors
    errors="$(grep -E '^\[[^]]*\] (ERROR|FATAL) ' "$dir/logs/server.log" | tail -n 20 || true)"
    if [[ -n "$errors" ]]; then
      log "CMD exited $status; broker errors from $dir/logs/server.log:"
      printf '%s\n' "$errors" >&2
    fi
  fi
  if [[ "${CHOREO_KEEP_KAFKA_DIR:-0}" == 1 ]]; then
    log "kept broker dir $dir"
  else
    rm -rf "$dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

brokers_line="$("$KAFKA_SH" start "$dir")" || { status=$?; exit "$status"; }
export KAFKA_BROKERS="${brokers_line#KAFKA_BROKERS=}"
export CHOREO_KAFKA_DIR="$dir"
export CHOREO_KAFKA_SH="$KAFKA_SH"   # absolute path, so a test in any package dir can run "$CHOREO_KAFKA_SH" restart
log "KAFKA_BROKERS=$KAFKA_BROKERS CHOREO_KAFKA_DIR=$CHOREO_KAFKA_DIR; running: $*"

# CMD runs in the foreground: Ctrl-C reaches it through the terminal's process group, and our traps run
# once it has exited (a background job in a non-interactive shell would ignore SIGINT).
set +e
"$@"
status=$?
set -e
exit "$status"
