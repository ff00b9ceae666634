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
