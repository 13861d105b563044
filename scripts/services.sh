#!/usr/bin/env bash
# The project's throwaway local services: PostgreSQL plus OpenSearch and/or Elasticsearch, all
# bound to 127.0.0.1 on free ports, all state outside the repository.
#
#   ./dev services start  [--engine opensearch|elasticsearch|both|none]
#   ./dev services stop   [--engine ...] [--postgres]   (neither: stop everything)
#   ./dev services env    [--engine ...]   (eval-able `export` lines)
#   ./dev services status
#   ./dev services reset                   (stop everything and delete $JOBS_STATE)
#
# Environment:
#   JOBS_CACHE   downloads and unpacked engines (default $HOME/.cache/jobs; dist/ inside)
#   JOBS_STATE   data dirs, pid files, ports, logs (default $JOBS_CACHE/state)
#   JOBS_ENGINE  engine when --engine is not given (default opensearch)
#   JOBS_SERVICE_USER     unprivileged user the services run as when started by root (jobs)
#   JOBS_OPENSEARCH_VERSION / JOBS_ELASTICSEARCH_VERSION   override the pinned versions
#   JOBS_ENGINE_HEAP      engine heap (default 512m); JOBS_ENGINE_TIMEOUT seconds (default 120)
#   JOBS_JAVA_HOME        Java for the engines (default: the machine's Java 17)
#   JOBS_MAVEN_CENTRAL    Maven Central base URL (default https://repo1.maven.org/maven2)
set -euo pipefail

# Newest 2.19.x / 8.x on Maven Central when this was written (checked 2026-11-27).
OPENSEARCH_VERSION="${JOBS_OPENSEARCH_VERSION:-2.19.6}"
ELASTICSEARCH_VERSION="${JOBS_ELASTICSEARCH_VERSION:-8.19.21}"

JOBS_CACHE="$(realpath -m "${JOBS_CACHE:-$HOME/.cache/jobs}")"
JOBS_STATE="$(realpath -m "${JOBS_STATE:-$JOBS_CACHE/state}")"
DIST="$JOBS_CACHE/dist"
SVC_USER="${JOBS_SERVICE_USER:-jobs}"
ENGINE_HEAP="${JOBS_ENGINE_HEAP:-512m}"
ENGINE_TIMEOUT="${JOBS_ENGINE_TIMEOUT:-120}"
PG_TIMEOUT=60
MAVEN_CENTRAL="${JOBS_MAVEN_CENTRAL:-https://repo1.maven.org/maven2}"
DB_NAME="jobs"
DB_USER="jobs"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

is_root() { [[ $EUID -eq 0 ]]; }

# Run a command as the service user (root) or as ourselves (everyone else).
SVC_PREFIX=()
if is_root; then SVC_PREFIX=(runuser -u "$SVC_USER" --); fi
# From /: the service user may not be allowed into the caller's folder (a CI clone in a private
# temp dir), and Postgres's tools then print "could not change directory". Paths are absolute.
as_svc() { (cd / && "${SVC_PREFIX[@]}" "$@"); }

# Give a path (created by us) to the service user.
own() { if is_root; then chown "$SVC_USER:" "$@"; fi; }

APT_UPDATED=0
apt_install() {
  is_root || die "missing $*: install it (sudo apt-get install -y $*) or run this as root"
  command -v apt-get >/dev/null || die "missing $* and no apt-get to install it"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q -y)
  log "installing $* with apt-get"
  if [[ $APT_UPDATED == 0 ]]; then "${apt[@]}" update >&2; APT_UPDATED=1; fi
  "${apt[@]}" install "$@" >&2
}

need_cmd() { # need_cmd COMMAND PACKAGE
  command -v "$1" >/dev/null || apt_install "$2"
  command -v "$1" >/dev/null || die "$1 still missing after installing $2"
}

ensure_user() {
  is_root || return 0
  id -u "$SVC_USER" >/dev/null 2>&1 && return 0
  log "creating system user $SVC_USER"
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$SVC_USER"
}

# The service user must be able to traverse every directory above JOBS_CACHE/JOBS_STATE
# (root's home is 0700 on Debian). Grant only traversal, to that user only (ACL) where possible.
ensure_reachable() {
  is_root || return 0
  local target="$1" d="" part
  local -a parts
  IFS=/ read -r -a parts <<<"${target#/}"
  for part in "${parts[@]}"; do
    d="$d/$part"
    [[ -d $d ]] || break
    runuser -u "$SVC_USER" -- test -x "$d" && continue
    if ! command -v setfacl >/dev/null; then apt_install acl || true; fi
    if command -v setfacl >/dev/null && setfacl -m "u:$SVC_USER:x" "$d" 2>/dev/null; then
      log "granted $SVC_USER traversal of $d (setfacl u:$SVC_USER:x)"
    else
      chmod o+x "$d"
      log "granted traversal of $d to others (chmod o+x; no ACL support)"
    fi
  done
}

# ---------------------------------------------------------------- ports

TAKEN_PORTS=" "
port_free() {
  local p="$1"
  [[ $TAKEN_PORTS == *" $p "* ]] && return 1
  if command -v ss >/dev/null; then
    [[ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]]
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 1; fi
  fi
}

# pick_port FILE: reuse the port remembered in FILE when it is free, else a random free one
# outside the kernel's ephemeral range; remember it in FILE.
pick_port() {
  local file="$1" p="" i
  if [[ -s $file ]]; then p="$(<"$file")"; fi
  if [[ ! $p =~ ^[0-9]+$ ]] || ! port_free "$p"; then
    p=""
    for ((i = 0; i < 200; i++)); do
      local c=$((20000 + RANDOM % 12000))
      if port_free "$c"; then p="$c"; break; fi
    done
    [[ -n $p ]] || die "no free port found on 127.0.0.1"
  fi
  TAKEN_PORTS+="$p "
  echo "$p" >"$file"
  echo "$p"
}

# ---------------------------------------------------------------- PostgreSQL

PG_DIR="$JOBS_STATE/postgres"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/sock"

pg_bindir() { # newest Debian cluster binaries, or the one matching an existing data dir
  local want="" d
  [[ -f $PG_DATA/PG_VERSION ]] && want="$(<"$PG_DATA/PG_VERSION")"
  if [[ -n $want && -x /usr/lib/postgresql/$want/bin/pg_ctl ]]; then
    echo "/usr/lib/postgresql/$want/bin"; return 0
  fi
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [[ -x $d/initdb && -x $d/pg_ctl ]]; then echo "$d"; return 0; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  return 1
}

pg_pid() { # pid of our running postmaster, or nothing
  local pid
  [[ -f $PG_DATA/postmaster.pid ]] || return 1
  pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null)" || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # A postmaster.pid left by a killed server names a pid the system may have given to another
  # process since (kill -0 succeeds for root on any): ours runs on this data directory.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-D $PG_DATA " || return 1
  echo "$pid"
}

# The port the running server listens on (line 4 of postmaster.pid), else the one remembered
# for the next start: the remembered one is written before a start that may then fail.
pg_port() {
  local p=""
  if pg_pid >/dev/null; then p="$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null)"; fi
  if [[ $p =~ ^[0-9]+$ ]]; then echo "$p"; return 0; fi
  [[ -s $PG_DIR/port ]] && cat "$PG_DIR/port"
}

pg_wait_ready() {
  local port="$1" deadline=$((SECONDS + PG_TIMEOUT))
  while ((SECONDS < deadline)); do
    pg_isready -q -h 127.0.0.1 -p "$port" -t 2 && return 0
    sleep 0.5
  done
  return 1
}

# A local CA and a server certificate for 127.0.0.1 / localhost, so clients can be tested with
# every sslmode (verify-full included), plus a second CA that signed nothing (the negative case).
pg_tls_files() {
  local dir="$PG_DIR/tls"
  [[ -s $dir/server.crt && -s $dir/server.key && -s $dir/ca.crt && -s $dir/other-ca.crt ]] && return 0
  command -v openssl >/dev/null || apt_install openssl
  rm -rf "$dir" && mkdir -p "$dir"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 3650 -subj "/CN=jobs local test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -x509 "${ec[@]}" -days 3650 -subj "/CN=jobs unrelated CA" \
    -keyout "$dir/other-ca.key" -out "$dir/other-ca.crt" 2>/dev/null
  openssl req "${ec[@]}" -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' \
    >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 3650 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  chmod 600 "$dir/server.key"
  own "$dir" "$dir/server.key" "$dir/server.crt"
  [[ -s $dir/server.crt ]] || die "could not make the local TLS certificates in $dir"
}

start_postgres() {
  local bin port
  if ! bin="$(pg_bindir)"; then
    apt_install postgresql
    bin="$(pg_bindir)" || die "PostgreSQL binaries (initdb, pg_ctl) not found after install"
  fi
  mkdir -p "$PG_DIR" "$PG_SOCK"
  own "$PG_DIR" "$PG_SOCK"

  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    rm -rf "$PG_DATA"
    log "initdb ($bin) in $PG_DATA"
    if ! as_svc "$bin/initdb" -D "$PG_DATA" -U "$DB_USER" --encoding=UTF8 --locale=C.UTF-8 \
      --auth=trust >"$PG_DIR/initdb.log" 2>&1; then
      tail -n 30 "$PG_DIR/initdb.log" >&2
      die "initdb failed (log: $PG_DIR/initdb.log)"
    fi
    cat >>"$PG_DATA/postgresql.conf" <<EOF

# ---- jobs: throwaway local cluster (scripts/services.sh) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_SOCK'
wal_level = logical
max_connections = 200
shared_buffers = 256MB
EOF
  fi

  pg_tls_files
  if pid="$(pg_pid)" && port="$(pg_port)" && pg_wait_ready "$port"; then
    # Restarted only when it answers that TLS is off (an older script started it): a psql that
    # fails (every connection in use, a slow checkpoint) must not stop a server others use.
    if [[ $(psql -X -At -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres -c 'SHOW ssl' 2>/dev/null) != off ]]; then
      log "postgres already running (pid $pid, port $port)"
      return 0
    fi
    log "postgres is running without TLS (started by an older script): restarting it"
    stop_postgres
  elif pid="$(pg_pid)"; then
    die "postgres (pid $pid) runs on $PG_DATA but does not answer on port ${port:-?}: see $PG_DIR/postgres.log"
  fi

  port="$(pick_port "$PG_DIR/port")"
  log "starting postgres on 127.0.0.1:$port (TLS on, CA $PG_DIR/tls/ca.crt)"
  local tls="-c ssl=on -c ssl_cert_file=$PG_DIR/tls/server.crt -c ssl_key_file=$PG_DIR/tls/server.key"
  if ! as_svc "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t "$PG_TIMEOUT" \
    -o "-p $port $tls" start >/dev/null 9>&-; then
    tail -n 30 "$PG_DIR/postgres.log" >&2 || true
    die "postgres did not start (log: $PG_DIR/postgres.log)"
  fi
  pg_wait_ready "$port" || die "postgres not accepting connections on port $port after ${PG_TIMEOUT}s"

  local exists
  exists="$(psql -X -q -At -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")"
  if [[ $exists != 1 ]]; then
    psql -X -q -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres \
      -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >/dev/null
  fi
}

stop_postgres() {
  local bin pid
  pid="$(pg_pid)" || return 0
  bin="$(pg_bindir)" || die "postgres is running (pid $pid) but pg_ctl is not found"
  log "stopping postgres (pid $pid)"
  if ! as_svc "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t "$PG_TIMEOUT" stop >/dev/null; then
    log "pg_ctl stop failed; sending SIGQUIT to $pid"
    kill -QUIT "$pid" 2>/dev/null || true
    wait_gone 10 "$pid" || die "postgres (pid $pid) did not stop"
  fi
}

# ---------------------------------------------------------------- search engines

engine_version() {
  case "$1" in
    opensearch) echo "$OPENSEARCH_VERSION" ;;
    elasticsearch) echo "$ELASTICSEARCH_VERSION" ;;
  esac
}
engine_group() {
  case "$1" in
    opensearch) echo "org/opensearch/distribution/integ-test-zip/opensearch" ;;
    elasticsearch) echo "org/elasticsearch/distribution/integ-test-zip/elasticsearch" ;;
  esac
}
engine_home() { echo "$DIST/$1-$(engine_version "$1")"; }
engine_dir() { echo "$JOBS_STATE/$1"; }

JAVA_HOME_17=""
find_java_home() {
  [[ -n $JAVA_HOME_17 ]] && return 0
  local j d attempt
  if [[ -n ${JOBS_JAVA_HOME:-} ]]; then JAVA_HOME_17="$JOBS_JAVA_HOME"; return 0; fi
  for attempt in 1 2; do
    for d in /usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/temurin-17-*; do
      if [[ -x $d/bin/java ]]; then JAVA_HOME_17="$d"; return 0; fi
    done
    if j="$(command -v java)" && "$j" -version 2>&1 | grep -q 'version "17'; then
      JAVA_HOME_17="$(dirname "$(dirname "$(readlink -f "$j")")")"; return 0
    fi
    [[ $attempt == 1 ]] && apt_install openjdk-17-jre-headless
  done
  die "Java 17 not found (set JOBS_JAVA_HOME)"
}

download_dist() { # download_dist ENGINE -> $DIST/<engine>-<ver>.zip
  local name="$1" ver group zip url sha
  ver="$(engine_version "$name")"; group="$(engine_group "$name")"
  zip="$DIST/$name-$ver.zip"
  [[ -s $zip ]] && return 0
  mkdir -p "$DIST"
  url="$MAVEN_CENTRAL/$group/$ver/$name-$ver.zip"
  log "downloading $url"
  if curl -fsSL --retry 3 --connect-timeout 20 --max-time 1200 -o "$zip.part" "$url" &&
    sha="$(curl -fsSL --retry 3 --max-time 60 "$url.sha1")" &&
    [[ "$(sha1sum "$zip.part" | cut -d' ' -f1)" == "${sha%% *}" ]]; then
    mv "$zip.part" "$zip"
    return 0
  fi
  rm -f "$zip.part"
  command -v mvn >/dev/null || die "download of $url failed"
  log "curl failed; trying mvn dependency:copy"
  local gid="${group%/*}"; gid="${gid//\//.}"
  mvn -q -B dependency:copy -Dartifact="$gid:$name:$ver:zip" -DoutputDirectory="$DIST" >&2 ||
    die "download of $gid:$name:$ver:zip failed (curl and mvn)"
  [[ -s $zip ]] || die "mvn did not produce $zip"
}

ensure_dist() { # ensure_dist ENGINE: unpack once into $DIST/<engine>-<ver>
  local name="$1" ver home zip tmp
  ver="$(engine_version "$name")"; home="$(engine_home "$name")"; zip="$DIST/$name-$ver.zip"
  [[ -x $home/bin/$name ]] && return 0
  download_dist "$name"
  need_cmd unzip unzip
  log "unpacking $zip"
  tmp="$(mktemp -d "$DIST/.unpack.XXXXXX")"
  if ! unzip -q "$zip" -d "$tmp" || [[ ! -x $tmp/$name-$ver/bin/$name ]]; then
    rm -rf "$tmp" "$zip"
    die "$zip is corrupt (deleted; run start again to re-download)"
  fi
  chmod -R go+rX,go-w "$tmp/$name-$ver"
  rm -rf "$home"
  mv "$tmp/$name-$ver" "$home"
  rm -rf "$tmp"
}

# pid of the engine's JVM (from its -p pid file) if it is alive and really ours.
engine_pid() {
  local dir pid
  dir="$(engine_dir "$1")"
  [[ -s $dir/pid ]] || return 1
  pid="$(<"$dir/pid")"
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # Both JVMs get -Djava.io.tmpdir=$dir/tmp (ES 8 passes -E settings on stdin, not argv).
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/tmp" || return 1
  echo "$pid"
}

# pid of the process we launched (runuser/launcher), if alive.
engine_launcher_pid() {
  local dir pid
  dir="$(engine_dir "$1")"
  [[ -s $dir/launcher.pid ]] || return 1
  pid="$(<"$dir/launcher.pid")"
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir" || return 1
  echo "$pid"
}

engine_port() { local f; f="$(engine_dir "$1")/port"; [[ -s $f ]] && cat "$f"; }

engine_url() { echo "http://127.0.0.1:$(engine_port "$1")"; }

engine_up() { # running and answering HTTP
  local port
  engine_pid "$1" >/dev/null && port="$(engine_port "$1")" &&
    curl -fsS -m 5 -o /dev/null "http://127.0.0.1:$port/"
}

engine_log_tail() {
  local name="$1" dir
  dir="$(engine_dir "$name")"
  {
    echo "---- $dir/stdout.log (tail) ----"
    tail -n 40 "$dir/stdout.log" 2>/dev/null || true
    if [[ -f $dir/logs/jobs-$name.log ]]; then
      echo "---- $dir/logs/jobs-$name.log (tail) ----"
      tail -n 20 "$dir/logs/jobs-$name.log"
    fi
  } >&2
}

launch_engine() { # start the JVM in the background; engine_wait waits for it
  local name="$1" ver home dir http tport pid
  ver="$(engine_version "$name")"; home="$(engine_home "$name")"; dir="$(engine_dir "$name")"
  if pid="$(engine_pid "$name")"; then
    log "$name already running (pid $pid, port $(engine_port "$name"))"
    return 0
  fi
  # A leftover launcher without a live JVM: clean it up first.
  stop_engine "$name" quiet

  if [[ -f $dir/version && "$(<"$dir/version")" != "$ver" ]]; then
    log "$name version changed ($(<"$dir/version") -> $ver): resetting $dir"
    rm -rf "$dir"
  fi
  mkdir -p "$dir"/{config,data,logs,tmp}
  if [[ ! -f $dir/config/jvm.options ]]; then cp -R "$home/config/." "$dir/config/"; fi
  # The stock jvm.options use paths relative to the working directory, which the start scripts
  # set to the (read-only, root-owned) distribution: point them into the state dir.
  sed -i -e "s#file=logs/gc.log#file=$dir/logs/gc.log#" -e "s#file=gc.log#file=$dir/logs/gc.log#" \
    -e "s#ErrorFile=logs/#ErrorFile=$dir/logs/#" -e "s#ErrorFile=hs_err#ErrorFile=$dir/logs/hs_err#" \
    -e "s#HeapDumpPath=data\$#HeapDumpPath=$dir/data#" "$dir/config/jvm.options"
  echo "$ver" >"$dir/version"
  if is_root; then chown -R "$SVC_USER:" "$dir/config" "$dir/tmp"; own "$dir" "$dir/data" "$dir/logs"; fi

  http="$(pick_port "$dir/port")"
  tport="$(pick_port "$dir/transport_port")"
  rm -f "$dir/pid"

  local -a settings=(
    -Ecluster.name="jobs-$name" -Enode.name="jobs-$name"
    -Ediscovery.type=single-node
    -Enetwork.host=127.0.0.1 -Ehttp.port="$http" -Etransport.port="$tport"
    -Epath.data="$dir/data" -Epath.logs="$dir/logs"
    -Ecluster.routing.allocation.disk.threshold_enabled=false
    # Expired scroll and point-in-time contexts reaped every second, not every minute: a test
    # sees a point in time lapse in seconds (tests/it/search.rs, the scan kept alive).
    -Esearch.keep_alive_interval=1s
  )
  # Only settings whose module is in this distribution (unknown settings are fatal).
  [[ -d $home/modules/x-pack-security ]] && settings+=(-Expack.security.enabled=false)
  [[ -d $home/modules/x-pack-ml ]] && settings+=(-Expack.ml.enabled=false)
  [[ -d $home/modules/ingest-geoip ]] && settings+=(-Eingest.geoip.downloader.enabled=false)

  find_java_home
  local -a envs=(
    "PATH=/usr/local/bin:/usr/bin:/bin" "HOME=$dir" "LANG=C.UTF-8" "JAVA_HOME=$JAVA_HOME_17"
  )
  case "$name" in
    opensearch)
      envs+=("OPENSEARCH_JAVA_HOME=$JAVA_HOME_17" "OPENSEARCH_PATH_CONF=$dir/config"
        "OPENSEARCH_TMPDIR=$dir/tmp" "OPENSEARCH_JAVA_OPTS=-Xms$ENGINE_HEAP -Xmx$ENGINE_HEAP") ;;
    elasticsearch)
      envs+=("ES_JAVA_HOME=$JAVA_HOME_17" "ES_PATH_CONF=$dir/config"
        "ES_TMPDIR=$dir/tmp" "ES_JAVA_OPTS=-Xms$ENGINE_HEAP -Xmx$ENGINE_HEAP") ;;
  esac

  log "starting $name $ver on 127.0.0.1:$http (transport $tport)"
  {
    echo "==== $(date -Is) starting $name $ver: http $http transport $tport"
  } >>"$dir/stdout.log"
  own "$dir/stdout.log"
  # cwd = $dir: the stock jvm.options write logs/gc.log, heap dumps and hs_err relative to it.
  # fd 9 (the state lock) must not leak into the long-running service.
  (cd "$dir" && exec 9>&- && exec setsid "${SVC_PREFIX[@]}" env -i "${envs[@]}" \
    "$home/bin/$name" -p "$dir/pid" "${settings[@]}" </dev/null >>"$dir/stdout.log" 2>&1) &
  echo $! >"$dir/launcher.pid"
}

# Whether the engine answering on the port is our JVM (its process id), not another state
# folder's engine that took the port while ours failed to bind it.
engine_answers_as_ours() {
  local name="$1" port="$2" pid
  pid="$(engine_pid "$name")" || return 1
  curl -fsS -m 5 "http://127.0.0.1:$port/_nodes/_local/process?filter_path=nodes.*.process.id" 2>/dev/null |
    grep -q "\"id\" *: *$pid\b"
}

engine_wait() {
  local name="$1" port deadline url
  port="$(engine_port "$name")"
  url="http://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&timeout=5s"
  deadline=$((SECONDS + ENGINE_TIMEOUT))
  while ((SECONDS < deadline)); do
    if engine_answers_as_ours "$name" "$port" && curl -fsS -m 10 -o /dev/null "$url" 2>/dev/null; then
      log "$name ready at http://127.0.0.1:$port"
      return 0
    fi
    if ! engine_pid "$name" >/dev/null && ! engine_launcher_pid "$name" >/dev/null; then
      engine_log_tail "$name"
      die "$name exited during startup (logs: $(engine_dir "$name"))"
    fi
    sleep 1
  done
  engine_log_tail "$name"
  stop_engine "$name" quiet
  die "$name not yellow within ${ENGINE_TIMEOUT}s on port $port (stopped it; logs: $(engine_dir "$name"))"
}

wait_gone() { # wait_gone SECONDS PID...
  local secs="$1" p alive; shift
  local deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.5
  done
  return 1
}

stop_engine() { # stop_engine ENGINE [quiet]
  local name="$1" quiet="${2:-}" dir pid lpid
  local -a pids=()
  dir="$(engine_dir "$name")"
  pid="$(engine_pid "$name")" && pids+=("$pid")
  lpid="$(engine_launcher_pid "$name")" && [[ $lpid != "$pid" ]] && pids+=("$lpid")
  if ((${#pids[@]})); then
    [[ -n $quiet ]] || log "stopping $name (pid ${pids[*]})"
    # The JVM first (graceful), then whatever launched it; only the launcher when the JVM has
    # not written its pid yet. (`[[ ]] && kill` ended the script under set -e when the JVM
    # exited in between.)
    if [[ -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; else kill -TERM "${pids[@]}" 2>/dev/null || true; fi
    wait_gone 60 "${pids[@]}" || {
      kill -TERM "${pids[@]}" 2>/dev/null || true
      wait_gone 10 "${pids[@]}" || {
        log "$name did not stop; SIGKILL ${pids[*]}"
        kill -KILL "${pids[@]}" 2>/dev/null || true
        wait_gone 10 "${pids[@]}" || true
      }
    }
  fi
  rm -f "$dir/pid" "$dir/launcher.pid"
}

# ---------------------------------------------------------------- commands

engines_for() {
  case "$1" in
    opensearch) echo opensearch ;;
    elasticsearch) echo elasticsearch ;;
    both) echo opensearch elasticsearch ;;
    none) ;;
  esac
}

# The lock is beside the state folder, not in it: `reset` deletes the folder while holding the
# lock, and a waiter on the deleted file then ran beside a newcomer locking a new one.
# The state folder is made after the lock is held: made before, a start queued behind a reset
# went on in a folder the reset then deleted.
lock_state() {
  mkdir -p "$(dirname "$JOBS_STATE")"
  exec 9>"$JOBS_STATE.lock"
  if ! flock -n 9; then
    log "waiting for another services start/stop ($JOBS_STATE.lock)"
    flock -w 1200 9 || die "another services start/stop holds $JOBS_STATE.lock"
  fi
}

cmd_start() {
  local -a engines
  read -r -a engines <<<"$(engines_for "$ENGINE")"
  need_cmd curl curl
  ensure_user
  mkdir -p "$JOBS_CACHE" "$DIST"
  lock_state
  mkdir -p "$JOBS_STATE"
  ensure_reachable "$JOBS_STATE"
  ensure_reachable "$DIST"
  local e
  # The dist dir may be shared by several JOBS_STATE dirs: serialise downloads/unpacking.
  exec 8>"$DIST/.lock"
  flock -w 1200 8 || die "another download holds $DIST/.lock"
  for e in "${engines[@]}"; do ensure_dist "$e"; done
  exec 8>&-
  for e in "${engines[@]}"; do launch_engine "$e"; done
  start_postgres
  for e in "${engines[@]}"; do engine_wait "$e"; done
  cmd_status
}

cmd_stop() { # --engine E: that engine; --postgres: Postgres; neither: everything
  local -a engines=()
  [[ -d $JOBS_STATE ]] || return 0
  lock_state
  if [[ -n $ENGINE_FLAG ]]; then
    read -r -a engines <<<"$(engines_for "$ENGINE")"
  elif [[ -z $POSTGRES_FLAG ]]; then
    engines=(opensearch elasticsearch)
  fi
  local e
  for e in "${engines[@]}"; do stop_engine "$e"; done
  if [[ -n $POSTGRES_FLAG || -z $ENGINE_FLAG ]]; then stop_postgres; fi
  return 0
}

cmd_env() {
  local port primary="" e
  local -a running=()
  for e in opensearch elasticsearch; do engine_pid "$e" >/dev/null && running+=("$e"); done
  if pg_pid >/dev/null && port="$(pg_port)"; then
    echo "export DATABASE_URL=postgres://$DB_USER@127.0.0.1:$port/$DB_NAME"
    # The CA of the local server's certificate (for sslmode=verify-full; tests use it).
    [[ -s $PG_DIR/tls/ca.crt ]] && echo "export JOBS_PG_CA=$PG_DIR/tls/ca.crt"
  else
    log "postgres is not running (./dev services start)"
  fi
  for e in "${running[@]}"; do
    case "$e" in
      opensearch) echo "export OPENSEARCH_URL=$(engine_url "$e")" ;;
      elasticsearch) echo "export ELASTICSEARCH_URL=$(engine_url "$e")" ;;
    esac
  done
  # Primary engine: the one asked for (--engine / JOBS_ENGINE) if running, else opensearch,
  # else elasticsearch.
  if [[ " ${running[*]} " == *" $ENGINE "* ]]; then
    primary="$ENGINE"
  elif ((${#running[@]})); then
    primary="${running[0]}"
  fi
  if [[ -n $primary ]]; then echo "export SEARCH_URL=$(engine_url "$primary")"; fi
  pg_pid >/dev/null || return 1
}

cmd_status() {
  local pid port e health
  if pid="$(pg_pid)"; then
    port="$(pg_port)"
    if pg_isready -q -h 127.0.0.1 -p "$port" -t 2 2>/dev/null; then health=ready; else health="not ready"; fi
    printf '%-14s running  postgres://%s@127.0.0.1:%s/%s  (pid %s, %s, PG %s)\n' postgres \
      "$DB_USER" "$port" "$DB_NAME" "$pid" "$health" "$(cat "$PG_DATA/PG_VERSION")"
  else
    printf '%-14s stopped\n' postgres
  fi
  for e in opensearch elasticsearch; do
    if pid="$(engine_pid "$e")"; then
      health="$(curl -fsS -m 5 "$(engine_url "$e")/_cluster/health" 2>/dev/null |
        grep -o '"status":"[a-z]*"' | cut -d'"' -f4)" || true
      printf '%-14s running  %s  (pid %s, %s %s, health %s)\n' "$e" "$(engine_url "$e")" \
        "$pid" "$e" "$(cat "$(engine_dir "$e")/version")" "${health:-unreachable}"
    else
      printf '%-14s stopped\n' "$e"
    fi
  done
  echo "state: $JOBS_STATE"
}

cmd_reset() {
  ENGINE_FLAG=""
  POSTGRES_FLAG=""
  cmd_stop
  log "deleting $JOBS_STATE"
  rm -rf "$JOBS_STATE"
}

cmd="${1:-}"
shift || true
ENGINE="${JOBS_ENGINE:-opensearch}"
ENGINE_FLAG=""
POSTGRES_FLAG=""
while (($#)); do
  case "$1" in
    --postgres) POSTGRES_FLAG=1; shift ;;
    --engine) [[ $# -ge 2 ]] || die "--engine needs a value"; ENGINE="$2"; ENGINE_FLAG=1; shift 2 ;;
    --engine=*) ENGINE="${1#--engine=}"; ENGINE_FLAG=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
case "$ENGINE" in
  opensearch|elasticsearch|both|none) ;;
  *) die "unknown engine '$ENGINE' (opensearch|elasticsearch|both|none)" ;;
esac

case "$cmd" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  ""|help|-h|--help) usage ;;
  *) usage >&2; die "unknown command '$cmd'" ;;
esac
