# Helpers shared by the benchmark scripts. Sourced after scripts/lib.sh and
# tests/pg-harness.sh, once the script has defined its psql() wrapper.

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Milliseconds of one statement, as the server session reports it (psql \timing).
ms_of() { psql -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1; }

# Start `rollupd -f -c CONF` in the background with its log in the cluster's
# directory; sets rollupd_pid and returns once it is ready (up to 3 minutes:
# a start-up reconcile may build a table), or exits with the log's tail.
start_rollupd() {
    "$root/rollupd" -f -c "$1" >"$PGHARNESS_DIR/rollupd.log" 2>&1 &
    rollupd_pid=$!
    for _ in $(seq 1800); do grep -q 'ready:' "$PGHARNESS_DIR/rollupd.log" && return 0; sleep 0.1; done
    tail -20 "$PGHARNESS_DIR/rollupd.log"
    exit 1
}

# Wait until `rollupd --status` (config $1) says all is well and no walk is
# under way: after a delivery change, a slot's creation, a restart.
wait_settled() {
    local json=
    for _ in $(seq 6000); do
        json=$("$root/rollupd" -c "$1" --status --json 2>/dev/null) &&
            ! grep -q '"walk_under_way": true' <<<"$json" && return 0
        sleep 0.1
    done
    echo "rollupd did not settle in 10 minutes: $json" >&2
    exit 1
}

# Wait until the slot $1 has confirmed everything written so far (the
# backlog of a paused or saturated run is refreshed).
wait_slot_caught_up() {
    local lsn
    lsn=$(psql -At -c "SELECT pg_current_wal_insert_lsn()")
    for _ in $(seq 6000); do
        [ "$(psql -At -c "SELECT coalesce(confirmed_flush_lsn >= '$lsn', true) FROM pg_replication_slots
                           WHERE slot_name = '$1' UNION ALL SELECT true LIMIT 1")" = t ] && return 0
        sleep 0.1
    done
    echo "slot $1 did not catch up in 10 minutes" >&2
    exit 1
}

# The CPU seconds a process has used (user + system), from /proc.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); print ($12 + $13) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Restart the throwaway server with wal_level $1 (replica or logical).
# Logical slots must be gone before a start under replica.
restart_with_wal_level() {
    psql -d postgres -c "ALTER SYSTEM SET wal_level = $1"
    pg_harness_as_pg "$PGHARNESS_BINDIR/pg_ctl" -D "$PGHARNESS_DIR/data" -l "$PGHARNESS_DIR/server.log" \
        -w -t 120 -m fast restart >/dev/null
}
