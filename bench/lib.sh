# Shared by the bench scripts (sourced, not run): the build, Weft nodes on port 0, a throwaway
# PostgreSQL, and stopping all of them on exit.
#
#   . bench/lib.sh
#   bench_init weft-x                  # $out, $data, the exit trap; builds; $weft_bin, $bin_dir
#   node_start NAME ID [weft flags]    # a node on 127.0.0.1:0: sets $pg, $peer, $node_pid
#   wait_voters ADDR N                 # until the node at ADDR lists N voters with status ok
#   url ADDR                           # postgres://postgres@ADDR/postgres
#   pg_start [-c name=value ...]       # PostgreSQL: sets $pg_port, $pg_url, $pg_pid
#
# Every node is stopped on exit (SIGTERM, then SIGKILL after 15 s), PostgreSQL with pg_ctl; the
# nodes' data directories and PostgreSQL's are removed, the logs are kept in $out.
# shellcheck shell=bash

bench_me=${0##*/}

# bench_init PREFIX: $out (BENCH_OUT, or a new /tmp/PREFIX.XXXXXX), $data (the nodes' data
# directories), the exit trap, then the release build of the whole workspace.
bench_init() {
    out=${BENCH_OUT:-$(mktemp -d "/tmp/$1.XXXXXX")}
    mkdir -p "$out"
    data=$(mktemp -d "/tmp/$1-data.XXXXXX")
    pids=()
    pg_dir=
    pg_started=
    run_as=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weft-target}
    # The whole workspace, always: building one package alone changes feature unification and
    # rebuilds DataFusion.
    cargo build --release --workspace
    bin_dir=$CARGO_TARGET_DIR/release
    # WEFT_BIN: another build of the server (an A/B run against a saved binary).
    weft_bin=${WEFT_BIN:-$bin_dir/weft}
}

bench_cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n $pg_started ]]; then
        "${run_as[@]}" pg_ctl -D "$pg_dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            "${run_as[@]}" pg_ctl -D "$pg_dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    [[ -z $pg_dir ]] || cp "$pg_dir/server.log" "$out/postgres.log" 2>/dev/null || true
    rm -rf "$data" ${pg_dir:+"$pg_dir"}
}

# node_start NAME NODE_ID [weft flags...]: starts a node on port 0 with its data in $data/NAME
# and waits (60 s at most) for its ready line; sets $pg and $peer to the addresses it printed
# and $node_pid.
node_start() {
    local name=$1 id=$2 line= i
    shift 2
    RUST_LOG=${RUST_LOG:-info,openraft=warn,tarpc=warn} "$weft_bin" start --node-id "$id" \
        --data-dir "$data/$name" --listen 127.0.0.1:0 "$@" >"$out/$name.out" 2>"$out/$name.log" &
    node_pid=$!
    pids+=("$node_pid")
    for ((i = 0; i < 600; i++)); do
        line=$(grep -m 1 '^weft ready ' "$out/$name.out" 2>/dev/null || true)
        [[ -n $line ]] && break
        kill -0 "$node_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $line ]]; then
        echo "$bench_me: $name did not print its ready line; its log:" >&2
        tail -n 20 "$out/$name.log" >&2
        exit 1
    fi
    pg=$(sed -n 's/.* pg=\([^ ]*\).*/\1/p' <<<"$line")
    peer=$(sed -n 's/.* peer=\([^ ]*\).*/\1/p' <<<"$line")
    echo "$name: node $id, pg $pg${peer:+, peer $peer}" >&2
}

url() { echo "postgres://postgres@$1/postgres"; }

# wait_voters ADDR N: waits (60 s at most) until the node at ADDR lists N voters with status ok.
wait_voters() {
    local host=${1%:*} port=${1##*:} i got=
    for ((i = 0; i < 600; i++)); do
        got=$(psql -h "$host" -p "$port" -U postgres -d postgres -Atqc \
            "SELECT count(*) FROM weft_nodes WHERE voter AND status = 'ok'" 2>/dev/null || true)
        [[ $got == "$2" ]] && return 0
        sleep 0.1
    done
    echo "$bench_me: $1 shows ${got:-no answer} ok voters, not $2, after 60 s:" >&2
    psql -h "$host" -p "$port" -U postgres -d postgres -c "SELECT * FROM weft_nodes" >&2 || true
    exit 1
}

# A port nobody listens on (checked, not reserved: a race with another process is possible).
free_port() {
    local port=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "$port"
}

# pg_start [-c name=value ...]: a fresh PostgreSQL (the newest installed) on 127.0.0.1 with its
# durable defaults (fsync=on, synchronous_commit=on) and shared_buffers=256MB, plus the given
# settings. As root it runs as the user `pgtest` (created if missing): PostgreSQL refuses root.
pg_start() {
    local bindir tool
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    export PATH="$PATH:/usr/local/bin:${bindir:-/usr/local/bin}"
    for tool in initdb pg_ctl; do
        command -v "$tool" >/dev/null || { echo "$bench_me: $tool not found" >&2; exit 1; }
    done
    if [[ $(id -u) -eq 0 ]]; then
        id pgtest >/dev/null 2>&1 || useradd --system --create-home pgtest
        run_as=(runuser -u pgtest --)
    fi
    pg_dir=$(mktemp -d /tmp/weft-bench-pg.XXXXXX)
    chmod 755 "$pg_dir"
    [[ ${#run_as[@]} -eq 0 ]] || chown pgtest "$pg_dir"
    pg_port=$(free_port 55434)
    "${run_as[@]}" initdb -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$out/initdb.log"
    pg_started=1
    "${run_as[@]}" pg_ctl -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
        -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c fsync=on -c synchronous_commit=on $*" \
        start >/dev/null
    pg_pid=$(head -n 1 "$pg_dir/data/postmaster.pid")
    pg_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
    echo "postgres: pid $pg_pid, 127.0.0.1:$pg_port" >&2
}
