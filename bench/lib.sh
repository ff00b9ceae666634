# Helpers shared by the benchmark scripts. Sourced after scripts/lib.sh and
# tests/pg-harness.sh, once the script has defined its psql() wrapper.

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Milliseconds of one statement, as the server session reports it (psql \timing).
ms_of() { psql -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1; }

# Start `rollupd -f -c CONF` (this tree's, or the binary $2) in the
# background with its log in the cluster's directory; sets rollupd_pid and
# returns once it is ready (up to 3 minutes: a start-up reconcile may build a
# table), or exits with the log's tail.
start_rollupd() {
    "${2:-$root/rollupd}" -f -c "$1" >"$PGHARNESS_DIR/rollupd.log" 2>&1 &
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

# Set the delivery of the channels named in $2 (a SQL list: 'a', 'b') to $3
# (queue table $4: logged by default), then wait for rollupd (config $1) to
# follow. A rollup whose delivery changed is walked once, a minute or more at
# 1 M users, and that walk must not run inside a measurement: wait until the
# rollup's last walk finished after the change (rollupd may read the new
# catalog only after --status was first asked), then for --status.
set_delivery_settled() {
    local t0 rollups
    t0=$(psql -At -c "SELECT now()")
    rollups=$(psql -At -c "SELECT coalesce(string_agg(DISTINCT c.rollup, ','), '') FROM rollupd.channel c
                            WHERE c.channel IN ($2) AND c.delivery <> '$3'")
    psql -c "SELECT rollupd.set_delivery(c.channel, '$3', '${4:-logged}') FROM rollupd.channel c
              WHERE c.channel IN ($2)" >/dev/null
    if [ -n "$rollups" ]; then
        for _ in $(seq 6000); do
            [ "$(psql -At -c "SELECT bool_and(coalesce(last_reconciled_at >= '$t0', false)) FROM rollupd.rollup
                               WHERE name = ANY (string_to_array('$rollups', ','))")" = t ] && break
            sleep 0.1
        done
    fi
    wait_settled "$1"
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

# The CPU seconds the given processes have run, summed (nanoseconds from
# /proc/<pid>/schedstat: it does not count waiting for a core; a process
# that is gone counts 0).
cpu_seconds() { # pid...
    local p
    for p in "$@"; do cut -d' ' -f1 "/proc/$p/schedstat" 2>/dev/null || true; done |
        awk '{s += $1} END {printf "%.3f\n", s / 1e9}'
}

# Restart the throwaway server with wal_level $1 (replica or logical).
# Logical slots must be gone before a start under replica.
restart_with_wal_level() {
    psql -d postgres -c "ALTER SYSTEM SET wal_level = $1"
    pg_harness_as_pg "$PGHARNESS_BINDIR/pg_ctl" -D "$PGHARNESS_DIR/data" -l "$PGHARNESS_DIR/server.log" \
        -w -t 120 -m fast restart >/dev/null
}

# ---- Per-key cost by batch size (the batch-cost scripts) ----
# bench.time_calls() runs one refresh path on keysets of one size in one
# session, as a rollupd worker does: `warm` untimed calls first (plpgsql
# keeps a statement's custom plans for 5 executions, then may switch to a
# generic one), then `n` timed ones, each its own transaction (the commit is
# timed too). Each call records its wall time and the session's own CPU time
# (the time the server process ran, in ns, from /proc/self/schedstat: read
# by the server, so the benchmark runs as a superuser; it is what the path
# costs whatever else the machine is running, short of cache contention).
# The kernel adds a running process's time to that figure at each scheduler
# tick (4 ms here) or when the process stops running, so bench.cpu_ms()
# sleeps 1 ms before it reads it: without that, a 2 ms call read as 0 or
# 4 ms. The sleep is outside the timed wall time; the reads add about
# 0.1 ms of CPU to each call.
# `pre` (untimed, its own transaction) runs before each call with the call's
# keys, `setup` once before the first (e.g. to fill the queue). Keysets are
# rows of bench.keysets (kind, size, r).
batch_timer_install() { # database
    psql -d "$1" <<'SQL'
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.keysets (kind text, size integer, r integer, keys text[], PRIMARY KEY (kind, size, r));
CREATE TABLE IF NOT EXISTS bench.timing (fn text, size integer, r integer, ms double precision, cpu_ms double precision);
CREATE OR REPLACE FUNCTION bench.cpu_ms() RETURNS double precision
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_sleep(0.001);
    RETURN split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint / 1e6;
END
$$;
CREATE OR REPLACE PROCEDURE bench.time_calls(p_fn text, p_sql text, p_pre text, p_setup text, p_kind text,
                                             p_size integer, p_from integer, p_warm integer, p_n integer)
LANGUAGE plpgsql
AS $$
DECLARE
    ks text[];
    t0 timestamptz;
    c0 double precision;
    ms double precision;
    cpu double precision;
BEGIN
    IF p_setup IS NOT NULL THEN
        EXECUTE p_setup USING p_kind, p_size, p_from, p_from + p_warm + p_n - 1;
        COMMIT;
    END IF;
    FOR i IN p_from .. p_from + p_warm + p_n - 1 LOOP
        SELECT k.keys INTO ks FROM bench.keysets k WHERE k.kind = p_kind AND k.size = p_size AND k.r = i;
        IF ks IS NULL THEN
            RAISE EXCEPTION 'bench: no keyset kind=% size=% r=%', p_kind, p_size, i;
        END IF;
        IF p_pre IS NOT NULL THEN
            EXECUTE p_pre USING ks, p_size;
            COMMIT;
        END IF;
        c0 := bench.cpu_ms();
        t0 := clock_timestamp();
        EXECUTE p_sql USING ks, p_size;
        COMMIT;
        ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
        cpu := bench.cpu_ms() - c0;
        IF i >= p_from + p_warm THEN
            INSERT INTO bench.timing VALUES (p_fn, p_size, i, ms, cpu);
        END IF;
        COMMIT;
    END LOOP;
END
$$;
SQL
}

# One unit: CALL bench.time_calls(...) in a session of its own, the timings
# appended to $batch_results as tab-separated "variant scale fn size ms
# cpu_ms" lines.
batch_unit() { # database variant scale fn sql pre setup kind size from warm n
    echo "CALL bench.time_calls(:'fn', :'sql', NULLIF(:'pre', ''), NULLIF(:'setup', ''), :'kind', $9, ${10}, ${11}, ${12});" |
        psql -d "$1" -v fn="$4" -v sql="$5" -v pre="$6" -v setup="$7" -v kind="$8"
    psql -d "$1" -At -F $'\t' -c "SELECT '$2', '$3', fn, size, round(ms::numeric, 3), cpu_ms FROM bench.timing ORDER BY r" \
        -c "TRUNCATE bench.timing" >>"$batch_results"
}

# The report from $batch_results (Markdown on stdout). Per path, scale and
# variant, at each batch size: microseconds per key of wall time (median
# call) and of the session's CPU time (the unit's calls summed), and the
# ratio of per-key CPU time between consecutive sizes; per path and size,
# per-key CPU time across scales; per path, scale and size, a baseline
# variant against this tree. A per-key ratio above 1.5 from a smaller batch
# to a larger one, or from a smaller scale to a larger one, is flagged
# CLIFF. CPU time is what the ratios use: wall time on a shared machine
# also measures whatever else runs (both are printed).
batch_report() {
    psql -d postgres -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS batch_results" \
        -c "CREATE TABLE batch_results (variant text, scale numeric, fn text, size integer, ms double precision, cpu_ms double precision)" \
        -c "\\copy batch_results FROM '$batch_results'"
    psql -d postgres -At <<'SQL'
CREATE TEMP VIEW k AS
SELECT variant, scale, fn, size, count(*) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms,
       1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) / size AS us,
       1000 * sum(cpu_ms) / (count(*) * size) AS cpu_us
  FROM batch_results GROUP BY 1, 2, 3, 4;
CREATE TEMP VIEW sizes AS SELECT DISTINCT size FROM k;
CREATE TEMP VIEW scales AS SELECT DISTINCT scale FROM k;
CREATE FUNCTION pg_temp.flag(r double precision) RETURNS text LANGUAGE sql AS
$$ SELECT round(r::numeric, 2) || CASE WHEN r > 1.5 THEN ' **CLIFF**' ELSE '' END $$;
CREATE FUNCTION pg_temp.cell(us double precision, cpu_us double precision, ms double precision) RETURNS text LANGUAGE sql AS
$$ SELECT coalesce(format('%s / %s (%s ms)', round(us::numeric, 1), round(cpu_us::numeric, 1), round(ms::numeric, 1)), '-') $$;

SELECT E'\n### Per-key cost by batch size\n\nMicroseconds per key: wall time of the median call / CPU time of the session (all '
       || (SELECT min(n) FROM k) || '-' || (SELECT max(n) FROM k) || ' timed calls), and the median call in ms.'
       || E'\n\n| path | scale | variant | ' || (SELECT string_agg(size || ' keys', ' | ' ORDER BY size) FROM sizes)
       || E' | CPU per key, to the next larger batch |\n|---|---|---|'
       || (SELECT string_agg('---|', '' ORDER BY size) FROM sizes) || '---|';
SELECT format('| %s | %s | %s | %s | %s |', r.fn, r.scale, r.variant,
              (SELECT string_agg(pg_temp.cell(k.us, k.cpu_us, k.ms), ' | ' ORDER BY s.size)
                 FROM sizes s LEFT JOIN k ON k.fn = r.fn AND k.scale = r.scale AND k.variant = r.variant AND k.size = s.size),
              (SELECT string_agg(format('%s→%s: %s', a.size, b.size, pg_temp.flag(b.cpu_us / nullif(a.cpu_us, 0))), ', ' ORDER BY a.size)
                 FROM k a JOIN k b ON (a.fn, a.scale, a.variant) = (r.fn, r.scale, r.variant)
                                  AND (b.fn, b.scale, b.variant) = (r.fn, r.scale, r.variant)
                                  AND b.size = (SELECT min(size) FROM k c WHERE (c.fn, c.scale, c.variant) = (r.fn, r.scale, r.variant) AND c.size > a.size)))
  FROM (SELECT DISTINCT fn, scale, variant FROM k) r ORDER BY r.fn, r.scale, r.variant;

SELECT E'\n### Per-key cost by scale\n\nCPU microseconds per key (wall in brackets).\n\n| path | variant | batch | '
       || (SELECT string_agg('scale ' || scale, ' | ' ORDER BY scale) FROM scales)
       || E' | CPU per key, to the next larger scale |\n|---|---|---|'
       || (SELECT string_agg('---|', '' ORDER BY scale) FROM scales) || '---|'
 WHERE (SELECT count(*) FROM scales) > 1;
SELECT format('| %s | %s | %s | %s | %s |', r.fn, r.variant, r.size,
              (SELECT string_agg(coalesce(format('%s (%s)', round(k.cpu_us::numeric, 1), round(k.us::numeric, 1)), '-'), ' | ' ORDER BY s.scale)
                 FROM scales s LEFT JOIN k ON k.fn = r.fn AND k.variant = r.variant AND k.size = r.size AND k.scale = s.scale),
              (SELECT string_agg(format('%s→%s: %s', a.scale, b.scale, pg_temp.flag(b.cpu_us / nullif(a.cpu_us, 0))), ', ' ORDER BY a.scale)
                 FROM k a JOIN k b ON (a.fn, a.variant, a.size) = (r.fn, r.variant, r.size)
                                  AND (b.fn, b.variant, b.size) = (r.fn, r.variant, r.size)
                                  AND b.scale = (SELECT min(scale) FROM k c WHERE (c.fn, c.variant, c.size) = (r.fn, r.variant, r.size) AND c.scale > a.scale)))
  FROM (SELECT fn, variant, size FROM k GROUP BY 1, 2, 3 HAVING count(*) > 1) r ORDER BY r.fn, r.variant, r.size;

SELECT E'\n### Side by side with the baseline\n\nMicroseconds per key, CPU (wall); the same keys, calls interleaved in one run.\n\n'
       || E'| path | scale | batch | baseline | this tree | baseline / this tree, CPU (wall) |\n|---|---|---|---|---|---|'
 WHERE EXISTS (SELECT 1 FROM k WHERE variant LIKE 'baseline%');
SELECT format('| %s | %s | %s | %s (%s) | %s (%s) | %sx (%sx) |', b.fn, b.scale, b.size,
              round(b.cpu_us::numeric, 1), round(b.us::numeric, 1), round(t.cpu_us::numeric, 1), round(t.us::numeric, 1),
              round((b.cpu_us / nullif(t.cpu_us, 0))::numeric, 2), round((b.us / t.us)::numeric, 2))
  FROM k b JOIN k t ON (t.fn, t.scale, t.size) = (b.fn, b.scale, b.size) AND t.variant = 'this tree'
 WHERE b.variant LIKE 'baseline%'
 ORDER BY b.fn, b.scale, b.size;
SQL
}

# The plans a path runs with, at one size: `warm` calls first (so that the
# plan cache is in the state a long-lived worker's is), then one call with
# auto_explain logging every nested statement's plan; the plans are appended
# to $batch_plans after a "\f variant<TAB>scale<TAB>fn<TAB>size" header,
# with costs and array literals dropped (they vary with the keys).
batch_plans() { # database variant scale fn sql kind size from warm
    {
        printf '\f%s\t%s\t%s\t%s\n' "$2" "$3" "$4" "$7"
        psql -d "$1" -v fn="$4" -v sql="$5" -v kind="$6" 2>&1 <<SQL |
CALL bench.time_calls(:'fn', :'sql', NULL, NULL, :'kind', $7, $8, $9, 0);
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
CALL bench.time_calls(:'fn', :'sql', NULL, NULL, :'kind', $7, $(( $8 + $9 )), 0, 1);
SQL
            sed -E 's/^(psql:[^ ]* )?NOTICE:  duration: [0-9.]+ ms  plan:$/--- plan/; s/ *\(cost=[^)]*\)//' |
            sed -E "s/'\{[^}]*\}'/'{…}'/g; s/\{[-0-9,]{40,}\}/{…}/g" |
            awk '/^--- plan$/ { if (b !~ /bench\./) printf "%s", b; b = "" } { b = b $0 "\n" } END { if (b !~ /bench\./) printf "%s", b }' |
            grep -v -E '^(CALL|LOAD|SET)$'
        psql -d "$1" -c "TRUNCATE bench.timing"
    } >>"$batch_plans"
}

# Whether each path's plans are the same at every size: Markdown on stdout.
# Plans are compared statement by statement, after dropping what varies
# with the data (row counts are not in them: no ANALYZE).
batch_plan_report() {
    printf '\n### Plans by batch size\n\n'
    printf "Each statement's plan in the first call of a session and in the one after the warm-up calls, compared across batch sizes.\n\n"
    printf '| path | scale | variant, call | sizes | same plans at every size |\n|---|---|---|---|---|\n'
    awk -v RS='\f' -F '\n' 'NF > 1 {
            split($1, h, "\t"); key = h[1] "\t" h[2] "\t" h[3]; size = h[4]
            body = ""; for (i = 2; i <= NF; i++) body = body $i "\n"
            plans[key, size] = body; sizes[key] = sizes[key] " " size; keys[key] = 1
        }
        END {
            for (key in keys) {
                n = split(sizes[key], s, " "); same = "yes"
                for (i = 2; i <= n; i++) if (plans[key, s[i]] != plans[key, s[1]]) { same = "**no**: " s[1] " and " s[i] " differ"; break }
                split(key, h, "\t")
                printf "| %s | %s | %s |%s | %s |\n", h[3], h[2], h[1], sizes[key], same
            }
        }' "$batch_plans" | sort
}

# After another revision's SQL was installed over a copy of this tree's
# database: drop the indexes this tree's install.sql creates and that one's
# does not, so that the baseline runs with its own indexes only.
baseline_drop_new_indexes() { # database this-install.sql baseline-install.sql
    local i
    for i in $(sed -n 's/^CREATE INDEX IF NOT EXISTS \([a-z_0-9]*\) .*/\1/p' "$2"); do
        grep -q "CREATE INDEX IF NOT EXISTS $i " "$3" || psql -d "$1" -c "DROP INDEX IF EXISTS $i"
    done
}

# Load database $1's tables and indexes in schema public, but those whose
# name matches the regular expression $2, into shared_buffers (pg_prewarm).
prewarm() { # database [exclude-regex]
    psql -d "$1" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
        -c "SELECT count(pg_prewarm(c.oid)) FROM pg_class c
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')
               AND c.relname !~ '${2:-^\$}'" >/dev/null
}

# ---- A baseline: another revision's SQL, side by side with this tree's ----
# The sql/ of revision $1 (git archive) into $PGHARNESS_DIR/baseline/sql;
# sets baseline_name ("baseline <short hash>"). The revision must have the
# current layout (each install.sql includes ../common/prologue.sql) and the
# same rollupd schema_version as this tree: its install.sql runs over a copy
# of a database this tree's made, and refuses another version.
baseline_extract() { # revision
    rm -rf "$PGHARNESS_DIR/baseline"
    mkdir -p "$PGHARNESS_DIR/baseline"
    git -C "$root" archive "$1" sql | tar -x -C "$PGHARNESS_DIR/baseline"
    if [ ! -f "$PGHARNESS_DIR/baseline/sql/common/prologue.sql" ]; then
        echo "BASELINE=$1: its sql/ predates sql/common/prologue.sql; pick a revision with the current layout" >&2
        exit 64
    fi
    baseline_name="baseline $(git -C "$root" rev-parse --short "$1")"
}

# Database $3, a copy of $2, with the baseline's install.sql of rollup $1 run
# over it (each channel keeps its delivery) and the indexes only this tree's
# install.sql creates dropped. No session may be connected to $2.
baseline_copy() { # rollup database copy
    psql -d postgres -c "CREATE DATABASE $3 TEMPLATE $2"
    psql -d "$3" -f "$PGHARNESS_DIR/baseline/sql/$1/install.sql" >/dev/null
    baseline_drop_new_indexes "$3" "$root/sql/$1/install.sql" "$PGHARNESS_DIR/baseline/sql/$1/install.sql"
}

# The pids of rollupd's sessions (listener, workers, WAL stream) on database $1.
rollupd_backend_pids() { # database
    psql -d "$1" -At -c "SELECT coalesce(string_agg(pid::text, ' '), '') FROM pg_stat_activity
                          WHERE datname = '$1' AND application_name LIKE 'rollupd%'"
}
