#!/usr/bin/env bash
# scripts/kafka.sh — a real single-node Apache Kafka (KRaft, broker+controller in one JVM) for tests and
# local runs, built from Maven Central jars, so it needs only Java 17 + Maven: no Docker, no tarball.
#
#   scripts/kafka.sh fetch                 resolve the broker jars into the cache (reused between runs)
#   scripts/kafka.sh start [DIR]           format DIR (a new temp dir if omitted), start, wait until ready,
#                                          print KAFKA_BROKERS=127.0.0.1:PORT on stdout
#   scripts/kafka.sh stop DIR              SIGTERM, wait up to KAFKA_STOP_TIMEOUT, then SIGKILL
#   scripts/kafka.sh restart DIR           stop, then start again on the same ports with the same data
#   scripts/kafka.sh status DIR            print state and KAFKA_BROKERS; exit 1 if not running
#   scripts/kafka.sh cli CLASS [ARGS...]   run a Kafka CLI class on the cached classpath, e.g.
#                                          cli org.apache.kafka.tools.TopicCommand --bootstrap-server ... --list
#
# What DIR holds: server.properties, kafka.pid, kafka.env (KAFKA_BROKERS=...), data/ (log.dirs),
# logs/server.log (broker log) and logs/stdout.log (JVM stdout/stderr).
#
# Environment (all optional):
#   KAFKA_VERSION          Kafka release to fetch/run (default 4.4.0, the newest 4.x; 3.9.x works too:
#                          KAFKA_VERSION=3.9.2 make test-kafka is the compatibility run)
#   CHOREO_CACHE           cache root (default $HOME/.cache/choreo); jars go to kafka-$KAFKA_VERSION/lib
#   KAFKA_PORT             client port for a new DIR (default: a free port); restart keeps DIR's port
#   KAFKA_CONTROLLER_PORT  KRaft controller port for a new DIR (default: a free port)
#   KAFKA_HEAP_OPTS        broker heap (default -Xms256m -Xmx512m)
#   KAFKA_JVM_OPTS         extra broker JVM flags
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default 120)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_EXTRA_LISTENERS  more listeners for a new DIR, e.g. SASL_SSL://127.0.0.1:29093 (the name is the
#                          security protocol); PLAINTEXT stays the inter-broker listener and the probe's
#   KAFKA_EXTRA_PROPERTIES a file appended to a new DIR's server.properties (ssl.*, sasl.* settings)
#   KAFKA_FORMAT_ARGS      more arguments for kafka-storage format, e.g.
#                          --add-scram SCRAM-SHA-512=[name=choreo,password=secret]
#   JAVA_HOME / JAVA       which java to use; MVN which mvn; CHOREO_MVN_ARGS extra mvn arguments
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
# Kafka 4.x logs through log4j2, 3.x through log4j 1 (reload4j): the pom's profile brings the binding, the
# JVM flag names the configuration file that binding reads.
case "$KAFKA_VERSION" in
  [0-3].*)
    LOGGING=reload4j
    BROKER_LOG_FLAG="-Dlog4j.configuration=file:$SCRIPT_DIR/kafka/log4j.properties"
    TOOLS_LOG_FLAG="-Dlog4j.configuration=file:$SCRIPT_DIR/kafka/tools-log4j.properties" ;;
  *)
    LOGGING=log4j2
    BROKER_LOG_FLAG="-Dlog4j2.configurationFile=$SCRIPT_DIR/kafka/log4j2.yaml"
    TOOLS_LOG_FLAG="-Dlog4j2.configurationFile=$SCRIPT_DIR/kafka/tools-log4j2.yaml" ;;
esac
CACHE_ROOT="${CHOREO_CACHE:-${HOME:-/tmp}/.cache/choreo}"
KAFKA_HOME="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIB="$KAFKA_HOME/lib"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

if [[ -n "${JAVA:-}" ]]; then :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"
else JAVA=java
fi
MVN="${MVN:-mvn}"

# Progress goes to stderr; stdout carries only the KAFKA_BROKERS line so callers can capture it.
log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now_ms() {
  local t; t="$(date +%s%3N)"
  [[ "$t" =~ ^[0-9]+$ ]] && echo "$t" || echo "$(( $(date +%s) * 1000 ))"   # BSD date has no %N
}
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01ds' $((ms / 1000)) $(((ms % 1000) / 100)); }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH ($2)"; }

# ---------------------------------------------------------------------------------------------- fetch

# The marker records the pom's hash and the version, so editing the pom (or KAFKA_VERSION) refetches.
fetch_stamp() {
  local sum
  if command -v sha256sum >/dev/null 2>&1; then sum="$(sha256sum "$POM")"; else sum="$(shasum -a 256 "$POM")"; fi
  printf '%s %s\n' "$KAFKA_VERSION" "${sum%% *}"
}

fetched() { [[ -f "$KAFKA_HOME/.complete" && "$(cat "$KAFKA_HOME/.complete")" == "$(fetch_stamp)" ]]; }

cmd_fetch() {
  if fetched; then
    log "kafka $KAFKA_VERSION already in $LIB"
    return 0
  fi
  need "$MVN" "install Maven 3.8+; it resolves the Kafka jars from Maven Central"
  need "$JAVA" "install Java 17"
  local t0 tmp mvnlog
  t0=$(now_ms)
  mkdir -p "$KAFKA_HOME"
  # Resolve into a private dir and rename at the end: parallel test runs may fetch at the same time and
  # must never see a half-filled lib/.
  tmp="$(mktemp -d "$KAFKA_HOME/lib.tmp.XXXXXX")"
  mvnlog="$tmp.mvn.log"
  log "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies (mvn; ~35 MB on a cold Maven cache)..."
  # shellcheck disable=SC2086 # CHOREO_MVN_ARGS is a list of words on purpose.
  if ! "$MVN" -B -ntp -f "$POM" ${CHOREO_MVN_ARGS:-} \
      -Dkafka.version="$KAFKA_VERSION" -Dkafka.logging="$LOGGING" \
      dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvnlog" 2>&1; then
    tail -n 40 "$mvnlog" >&2
    rm -rf "$tmp" "$mvnlog"
    die "mvn dependency:copy-dependencies failed (log above)"
  fi
  rm -f "$mvnlog"
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"; }
  rm -rf "$LIB.old"
  [[ -d "$LIB" ]] && mv "$LIB" "$LIB.old"
  if ! mv -T "$tmp" "$LIB" 2>/dev/null; then
    rm -rf "$tmp"   # another run won the race; its lib/ is as good as ours
  fi
  rm -rf "$LIB.old"
  fetch_stamp >"$KAFKA_HOME/.complete"
  log "fetched $(find "$LIB" -name '*.jar' | wc -l) jars ($(du -sh "$LIB" | cut -f1)) into $LIB in $(elapsed "$t0")"
}

ensure_fetched() { fetched || cmd_fetch; }

# ------------------------------------------------------------------------------------------- helpers

# Runs a Kafka CLI class with quiet logging and a JVM tuned for start-up time, not throughput.
run_tool() {
  local class="$1"; shift
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    "$TOOLS_LOG_FLAG" -cp "$LIB/*" "$class" "$@"
}

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# True if pid is a live (not zombie) broker JVM started for this DIR. Checking the command line means we
# never signal an unrelated process that reused the pid.
is_our_broker() {
  local pid="$1" dir="$2"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/stat" ]]; then
    local state
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Z]).*/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$dir/server.properties" || return 1
  fi
  return 0
}

read_pid() { if [[ -f "$1/kafka.pid" ]]; then cat "$1/kafka.pid"; fi; }

prop() { sed -n "s/^$1=//p" "$2" | tail -n 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Picks a port that nothing listens on, below Linux's ephemeral range (32768+) so outgoing connections
# cannot take it between the check and the broker's bind. A bind race is still possible with other
# servers; start retries with new ports when the broker reports "Address already in use".
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
    [[ "$p" == "${1:-}" ]] && continue
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free port found in 20000-31999"
}

# Kafka cluster ids are 16 random bytes in unpadded base64url; generating it here saves a JVM start
# (`kafka-storage.sh random-uuid` does the same).
random_cluster_id() { head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

write_properties() {
  local dir="$1" port="$2" cport="$3" extra="" protocols="" l listeners
  if [[ -n "${KAFKA_EXTRA_LISTENERS:-}" ]]; then
    extra=",$KAFKA_EXTRA_LISTENERS"
    IFS=',' read -r -a listeners <<<"$KAFKA_EXTRA_LISTENERS"
    for l in "${listeners[@]}"; do protocols+=",${l%%://*}:${l%%://*}"; done
  fi
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/kafka.sh for a single-node test broker; every listener is on 127.0.0.1 only.
process.roles=broker,controller
node.id=1
# Static KRaft quorum (one voter): simplest form that survives restart with the same ports.
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport$extra
advertised.listeners=PLAINTEXT://127.0.0.1:$port$extra
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$protocols
log.dirs=$dir/data

# choreo creates every topic explicitly (internal/kafkaadmin); a typo must fail, not create a topic.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# One broker: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Fewer internal partitions than the default 50 makes the first consumer group / transaction much faster.
offsets.topic.num.partitions=6
transaction.state.log.num.partitions=6
# Tests join and leave groups constantly; do not wait 3 s before the first rebalance.
group.initial.rebalance.delay.ms=0
# After a SIGKILL the controller waits out the dead incarnation's broker session before the restarted
# broker may register; 4 s instead of 9 s keeps outage tests short (heartbeats are local, so no flapping).
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
# Tests make throwaway topics; delete them for real.
delete.topic.enable=true
EOF
  if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    printf '\n# From KAFKA_EXTRA_PROPERTIES (%s)\n' "$KAFKA_EXTRA_PROPERTIES" >>"$dir/server.properties"
    cat "$KAFKA_EXTRA_PROPERTIES" >>"$dir/server.properties"
  fi
}

format_storage() {
  local dir="$1" t0 out extra=()
  t0=$(now_ms)
  rm -rf "$dir/data"
  # read -a splits on blanks without globbing, so SCRAM's [name=...] stays as written.
  [[ -z "${KAFKA_FORMAT_ARGS:-}" ]] || read -r -a extra <<<"$KAFKA_FORMAT_ARGS"
  if ! out="$(run_tool kafka.tools.StorageTool format -t "$(random_cluster_id)" -c "$dir/server.properties" ${extra[@]+"${extra[@]}"} 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "kafka-storage format failed"
  fi
  log "formatted KRaft storage in $dir/data ($(elapsed "$t0"))"
}

launch() {
  local dir="$1" pid
  mkdir -p "$dir/logs"
  # shellcheck disable=SC2086 # HEAP_OPTS and KAFKA_JVM_OPTS are lists of flags on purpose.
  nohup "$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    ${KAFKA_JVM_OPTS:-} \
    -Dkafka.logs.dir="$dir/logs" "$BROKER_LOG_FLAG" \
    -cp "$LIB/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/logs/stdout.log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$dir/kafka.pid"
}

# Waits for the client port to accept connections, then for a real metadata round trip (DescribeCluster)
# that returns this DIR's cluster id, so a different broker that happens to hold the port never passes.
# Returns 0 when ready, 2 when the broker died on a port conflict, 1 on any other failure or timeout.
wait_ready() {
  local dir="$1" port="$2" pid deadline want got
  pid="$(read_pid "$dir")"
  want="$(prop cluster.id "$dir/data/meta.properties")"
  deadline=$(( $(date +%s) + START_TIMEOUT ))
  # Bound each probe so a broker that accepts TCP but never answers cannot hold us past the deadline.
  printf 'default.api.timeout.ms=10000\nrequest.timeout.ms=5000\n' >"$dir/probe.properties"
  while :; do
    if ! is_our_broker "$pid" "$dir"; then
      grep -qs 'Address already in use' "$dir/logs/server.log" "$dir/logs/stdout.log" && return 2
      return 1
    fi
    if port_in_use "$port"; then
      got="$(run_tool org.apache.kafka.tools.ClusterTool cluster-id --bootstrap-server "127.0.0.1:$port" \
        --config "$dir/probe.properties" 2>/dev/null | sed -n 's/^Cluster ID: //p' || true)"
      [[ -n "$got" && "$got" == "$want" ]] && return 0
      if [[ -n "$got" ]]; then
        log "127.0.0.1:$port answers with cluster $got, not ours ($want): another broker holds the port"
        return 2
      fi
    fi
    (( $(date +%s) < deadline )) || { log "not ready after ${START_TIMEOUT}s"; return 1; }
    sleep 0.2
  done
}

show_failure() {
  local dir="$1"
  log "broker did not become ready; last lines of $dir/logs/server.log:"
  tail -n 30 "$dir/logs/server.log" >&2 2>/dev/null || true
  tail -n 10 "$dir/logs/stdout.log" >&2 2>/dev/null || true
}

# ------------------------------------------------------------------------------------------- commands

cmd_start() {
  local dir port cport fresh=0 fixed=0 attempt rc t0
  ensure_fetched
  need "$JAVA" "install Java 17"
  if [[ -n "${1:-}" ]]; then dir="$(abs_dir "$1")"
  else dir="$(mktemp -d "${TMPDIR:-/tmp}/choreo-kafka.XXXXXX")"
  fi
  if is_our_broker "$(read_pid "$dir")" "$dir"; then
    die "a broker is already running for $dir (pid $(read_pid "$dir")); use restart or stop"
  fi
  t0=$(now_ms)

  if [[ -f "$dir/server.properties" && -f "$dir/data/meta.properties" ]]; then
    # Existing DIR (restart): same ports, same data, no format.
    port="$(prop listeners "$dir/server.properties" | sed -E 's#.*PLAINTEXT://127\.0\.0\.1:([0-9]+).*#\1#')"
    cport="$(prop controller.quorum.voters "$dir/server.properties" | sed -E 's#.*:([0-9]+)$#\1#')"
    fixed=1
    log "starting existing broker in $dir on 127.0.0.1:$port"
  else
    fresh=1
    [[ -n "${KAFKA_PORT:-}${KAFKA_CONTROLLER_PORT:-}" ]] && fixed=1
    port="${KAFKA_PORT:-$(free_port)}"
    cport="${KAFKA_CONTROLLER_PORT:-$(free_port "$port")}"
    log "starting new broker in $dir on 127.0.0.1:$port (controller 127.0.0.1:$cport)"
  fi

  for attempt in 1 2 3; do
    if port_in_use "$port" || port_in_use "$cport"; then
      if (( fresh && !fixed && attempt < 3 )); then
        port="$(free_port)"; cport="$(free_port "$port")"
        continue
      fi
      die "127.0.0.1:$port or 127.0.0.1:$cport is already in use (by another process)"
    fi
    if (( fresh )); then
      write_properties "$dir" "$port" "$cport"
      format_storage "$dir"
    fi
    launch "$dir"
    rc=0; wait_ready "$dir" "$port" || rc=$?
    (( rc == 0 )) && break
    cmd_stop "$dir" >/dev/null 2>&1 || true
    if (( rc == 2 && fresh && !fixed && attempt < 3 )); then
      log "port $port or $cport was taken meanwhile; retrying on new ports"
      port="$(free_port)"; cport="$(free_port "$port")"
      continue
    fi
    show_failure "$dir"
    die "broker in $dir failed to start (see $dir/logs/server.log)"
  done

  printf 'KAFKA_BROKERS=127.0.0.1:%s\n' "$port" >"$dir/kafka.env"
  log "ready in $(elapsed "$t0"): pid $(read_pid "$dir"), dir $dir, log $dir/logs/server.log"
  echo "KAFKA_BROKERS=127.0.0.1:$port"
}

cmd_stop() {
  local dir pid deadline t0
  [[ -n "${1:-}" ]] || die "usage: kafka.sh stop DIR"
  [[ -d "$1" ]] || die "no such directory: $1"
  dir="$(abs_dir "$1")"
  pid="$(read_pid "$dir")"
  if ! is_our_broker "$pid" "$dir"; then
    log "no broker running for $dir"
    rm -f "$dir/kafka.pid"
    return 0
  fi
  t0=$(now_ms)
  log "stopping broker pid $pid (SIGTERM, up to ${STOP_TIMEOUT}s)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(date +%s) + STOP_TIMEOUT ))
  while is_our_broker "$pid" "$dir" && (( $(date +%s) < deadline )); do sleep 0.2; done
  if is_our_broker "$pid" "$dir"; then
    log "broker pid $pid still up after ${STOP_TIMEOUT}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while is_our_broker "$pid" "$dir"; do sleep 0.1; done
  fi
  rm -f "$dir/kafka.pid"
  log "stopped in $(elapsed "$t0")"
}

cmd_restart() {
  [[ -n "${1:-}" ]] || die "usage: kafka.sh restart DIR"
  [[ -f "$1/server.properties" ]] || die "$1 holds no broker (no server.properties); use start"
  cmd_stop "$1"
  cmd_start "$1"
}

cmd_status() {
  local dir pid
  [[ -n "${1:-}" && -d "$1" ]] || die "usage: kafka.sh status DIR"
  dir="$(abs_dir "$1")"
  pid="$(read_pid "$dir")"
  if is_our_broker "$pid" "$dir"; then
    log "running: pid $pid, dir $dir"
    cat "$dir/kafka.env"
  else
    log "not running: $dir"
    return 1
  fi
}

cmd_cli() {
  [[ -n "${1:-}" ]] || die "usage: kafka.sh cli CLASS [ARGS...]"
  ensure_fetched
  run_tool "$@"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; }

# Tests running in parallel may restart the same broker; one lock per DIR serialises start/stop/restart.
# fd 9 is closed for the broker JVM (see launch) so the lock ends with this script.
lock_dir() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$1"
  exec 9>>"$1/.lock"
  flock -w "$(( START_TIMEOUT + STOP_TIMEOUT + 30 ))" 9 || die "timed out waiting for the lock on $1"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    start) [[ -z "${1:-}" ]] || lock_dir "$1" ;;
    stop|restart) [[ -z "${1:-}" || ! -d "$1" ]] || lock_dir "$1" ;;
  esac
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_restart "$@" ;;
    status) cmd_status "$@" ;;
    cli) cmd_cli "$@" ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
