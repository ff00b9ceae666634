# Throwaway PostgreSQL for tests and the demo: initdb in a temp dir, a unix
# socket in that dir (no TCP), fsync off. Sourced, not run.
#   pg_harness_start   sets PGHARNESS_DIR PGHOST PGPORT PGUSER PGDATABASE
#   pg_harness_stop    stops the server and removes the directory
#   pg_harness_as_pg CMD...   runs CMD as the server's user (postgres when root)
# PGHARNESS_SETTINGS adds server options ("-c shared_buffers=2GB ...").

pg_harness_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
        echo "pg-harness: no PostgreSQL server binaries under /usr/lib/postgresql" >&2
        return 1
    fi
    echo "$d"
}

pg_harness_as_pg() {
    if [ "$(id -u)" = 0 ]; then
        # PostgreSQL refuses to run as root. Run from a directory postgres
        # can read: the caller's (a checkout under /root, say) may not be.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_harness_start() {
    local bindir port
    bindir=$(pg_harness_bindir) || return 1
    PGHARNESS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rollupd-pg.XXXXXX") || return 1
    PGHARNESS_BINDIR=$bindir
    chmod 755 "$PGHARNESS_DIR"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$PGHARNESS_DIR"
    fi
    # The socket lives in our private directory, so any port number is free.
    port=$(( 20000 + RANDOM % 30000 ))
    pg_harness_as_pg "$bindir/initdb" -D "$PGHARNESS_DIR/data" -U postgres -A trust -E UTF8 --no-sync \
        >"$PGHARNESS_DIR/initdb.log" 2>&1 || { cat "$PGHARNESS_DIR/initdb.log" >&2; return 1; }
    pg_harness_as_pg "$bindir/pg_ctl" -D "$PGHARNESS_DIR/data" -l "$PGHARNESS_DIR/server.log" -w -t 60 \
        -o "-p $port -k $PGHARNESS_DIR -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 ${PGHARNESS_SETTINGS:-}" \
        start >/dev/null || { cat "$PGHARNESS_DIR/server.log" >&2; return 1; }
    export PGHARNESS_DIR PGHARNESS_BINDIR
    export PGHOST=$PGHARNESS_DIR PGPORT=$port PGUSER=postgres PGDATABASE=postgres
}

pg_harness_stop() {
    [ -n "${PGHARNESS_DIR:-}" ] && [ -d "$PGHARNESS_DIR" ] || return 0
    # Anything started against this cluster goes with it.
    pkill -KILL -f -- "$PGHARNESS_DIR/" 2>/dev/null || true
    pg_harness_as_pg "$PGHARNESS_BINDIR/pg_ctl" -D "$PGHARNESS_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PGHARNESS_DIR"
    PGHARNESS_DIR=
}
