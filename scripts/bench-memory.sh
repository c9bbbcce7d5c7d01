#!/usr/bin/env bash
# Memory benchmark: indexing, rescans and search of a large synthetic workspace, each
# measured side by side with a reference in the same run.
#
#   scripts/bench-memory.sh            # ~50 MB workspace (3,000 daily logs + large MEMORY.md)
#   SCALE=0.1 scripts/bench-memory.sh  # a tenth of it, for a quick look
#
# Needs: a release build (built here if missing), curl, sqlite3, rg (ripgrep), ps (procps).
# Debian/Ubuntu: apt-get install -y ripgrep sqlite3 procps curl
#
# What it prints, with the target for each:
#   full index        `localgpt memory reindex` on an empty cache, vs the sqlite3 CLI
#                     bulk-loading the same chunk rows into the same FTS5 schema
#                     (target: at least 0.5x its throughput)
#   no-change rescan  the daemon's stat-only pass (POST /api/memory/reindex) (target < 100 ms)
#   search            p50/p99 over HTTP (one keep-alive connection) for rare, common and
#                     multi-term queries, vs the sqlite3 CLI running the same SQL and FTS
#                     expression on the same database (target p50 <= 1.5x or + 1 ms),
#                     and vs rg over the files
#   daemon RSS        after the daemon indexed the workspace itself from an empty cache
set -euo pipefail

SCALE="${SCALE:-1}"
RUNS="${RUNS:-200}"     # HTTP and sqlite3 samples per query
RG_RUNS="${RG_RUNS:-20}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/localgpt"

missing=()
for tool in curl sqlite3 rg ps awk; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "bench-memory: missing tools: ${missing[*]}" >&2
    echo "  on Debian/Ubuntu: apt-get install -y curl sqlite3 ripgrep procps" >&2
    exit 1
fi
if [[ ! -x "$BIN" || -n "$(find "$ROOT/src" -newer "$BIN" -name '*.rs' -print -quit)" ]]; then
    echo "building release binary..." >&2
    (cd "$ROOT" && cargo build --release --quiet)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/localgpt-bench-memory.XXXXXX")"
DAEMON_PID=""
cleanup() {
    if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

export HOME="$WORK/home"
export LOCALGPT_CONFIG="$WORK/config.toml"
export LOCALGPT_DATA_DIR="$WORK/data"
export LOCALGPT_STATE_DIR="$WORK/state"
export LOCALGPT_CACHE_DIR="$WORK/cache"
unset LOCALGPT_WORKSPACE XDG_RUNTIME_DIR
WS="$LOCALGPT_DATA_DIR/workspace"
DB="$LOCALGPT_CACHE_DIR/memory-index.sqlite"
mkdir -p "$HOME" "$WS/memory"
printf '[server]\nport = 0\naccess_log = false\n[logging]\nlevel = "warn"\n' >"$LOCALGPT_CONFIG"

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

# --- 1. A synthetic workspace ---------------------------------------------------------
# Words follow a Zipf-like law (a log-uniform rank), mixed with English stop words, in
# headings, paragraphs, lists, code blocks and the odd front matter. Three words are
# planted: "project" is the most common word, "deploy database migration" are mid-frequency,
# "quetzalcoatl" appears in three files only.
echo "generating workspace (scale $SCALE)..." >&2
gen_start=$(now_ms)
awk -v ws="$WS" -v scale="$SCALE" '
function word(   r) {
    if (rand() < 0.38) return stop[int(rand() * nstop) + 1]
    r = int(exp(rand() * lognv))
    if (r < 1) r = 1
    if (r > nv) r = nv
    return v[r]
}
function sentence(n,   s, i) {
    s = word()
    s = toupper(substr(s, 1, 1)) substr(s, 2)
    for (i = 1; i < n; i++) s = s " " word()
    return s "."
}
function paragraph(   n, p, i) {
    n = 2 + int(rand() * 5)
    p = sentence(6 + int(rand() * 14))
    for (i = 1; i < n; i++) p = p " " sentence(6 + int(rand() * 14))
    return p
}
function block(f,   k, i, n) {
    k = rand()
    if (k < 0.15) {
        print "## " sentence(2 + int(rand() * 4)) > f
    } else if (k < 0.55) {
        print paragraph() > f
    } else if (k < 0.80) {
        n = 3 + int(rand() * 6)
        for (i = 0; i < n; i++) print "- " (rand() < 0.3 ? "[ ] " : "") sentence(4 + int(rand() * 10)) > f
    } else if (k < 0.90) {
        print "```" (rand() < 0.5 ? "rust" : "sh") > f
        n = 2 + int(rand() * 8)
        for (i = 0; i < n; i++) print "    let " word() "_" word() " = " word() "(" word() ", " int(rand() * 1000) ");" > f
        print "```" > f
    } else {
        print "> " sentence(8 + int(rand() * 12)) " See [" word() "](https://example.com/" word() "/" int(rand() * 99999) ")." > f
    }
    print "" > f
}
function day_name(n,   y, m, d, ml) {
    y = 2017; m = 1; d = 1
    split("31 28 31 30 31 30 31 31 30 31 30 31", ml, " ")
    while (n > 0) {
        ml[2] = (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 29 : 28
        d++
        if (d > ml[m]) { d = 1; m++ }
        if (m > 12) { m = 1; y++ }
        n--
    }
    return sprintf("%04d-%02d-%02d", y, m, d)
}
BEGIN {
    srand(20260214)
    nstop = split("the of and to in is that for it as with was on be at by this had not are but from or have an they which you were all there would their we been has when who will more no if out so what up its about into than them can only other some could these then do any my now such like our over even most after also did many before must through back where much your way well down should because each just those how too very", stop, " ")
    nd = split("project notes meeting rust server client design review release budget team plan idea week call email docs test build code api model user data team report issue update week task deploy cafe tokyo zurich garden travel family book recipe running doctor invoice customer schedule latency index search memory heartbeat prompt token", dom, " ")
    # The planted mid-frequency words sit at ranks ~25-40.
    nv = 0
    for (i = 1; i <= nd; i++) v[++nv] = dom[i]
    v[26] = "deploy"; v[31] = "database"; v[38] = "migration"
    ns = split("ka lo mi ne ru sa ti vo ze pa qu ri ol an et is ur em ba do", syl, " ")
    for (i = 1; i <= 40000; i++) {
        w = ""
        n = 2 + int(rand() * 3)
        for (j = 0; j < n; j++) w = w syl[int(rand() * ns) + 1]
        v[++nv] = w
    }
    v[++nv] = "café"; v[++nv] = "zürich"; v[++nv] = "東京タワー"; v[++nv] = "naïve"
    lognv = log(nv + 1)

    days = int(3000 * scale); if (days < 10) days = 10
    for (n = 0; n < days; n++) {
        name = day_name(n)
        f = ws "/memory/" name ".md"
        if (n % 50 == 0) print "---\ndate: " name "\ntags: [daily, " word() "]\n---" > f
        print "# " name "\n" > f
        blocks = 12 + int(rand() * 80)
        for (b = 0; b < blocks; b++) block(f)
        if (n == 17 || n == int(days / 2) || n == days - 3) print "Read about quetzalcoatl in the museum guide.\n" > f
        close(f)
    }
    f = ws "/MEMORY.md"
    print "# Memory\n" > f
    blocks = int(54000 * scale)
    for (b = 0; b < blocks; b++) block(f)
    close(f)
}'
printf 'This file is the heartbeat list.\n' >"$WS/HEARTBEAT.md"
printf '# Soul\nBe concise.\n' >"$WS/SOUL.md"
FILES=$(find "$WS" -name '*.md' | wc -l)
BYTES=$(du -sb "$WS" | cut -f1)
MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "workspace: $FILES files, $MB MB (generated in $(( $(now_ms) - gen_start )) ms)" >&2

# --- 2. Full index: ours vs the sqlite3 CLI --------------------------------------------
sync
t0=$(now_ms)
"$BIN" memory reindex >"$WORK/reindex.out"
ours_full_ms=$(( $(now_ms) - t0 ))
CHUNKS=$(sqlite3 "$DB" 'SELECT count(*) FROM chunks')
CHUNK_MB=$(sqlite3 "$DB" 'SELECT printf("%.1f", sum(length(CAST(content AS BLOB))) / 1048576.0) FROM chunks')

# The same rows, already chunked, as SQL the CLI loads in one transaction into the same
# schema (tables, path index, FTS5 external-content table, same tokenizer and pragmas).
{
    echo 'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;'
    echo 'CREATE TABLE chunks (id INTEGER PRIMARY KEY, path TEXT NOT NULL, line_start INTEGER NOT NULL, line_end INTEGER NOT NULL, content TEXT NOT NULL);'
    echo 'CREATE INDEX chunks_path ON chunks(path);'
    echo "CREATE VIRTUAL TABLE chunks_fts USING fts5(content, content = 'chunks', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2');"
    echo 'BEGIN;'
    sqlite3 "$DB" '.mode insert chunks' 'SELECT id, path, line_start, line_end, content FROM chunks'
    echo 'INSERT INTO chunks_fts (rowid, content) SELECT id, content FROM chunks;'
    echo 'COMMIT;'
} >"$WORK/load.sql"
sync
t0=$(now_ms)
sqlite3 "$WORK/baseline.sqlite" <"$WORK/load.sql" >/dev/null
cli_full_ms=$(( $(now_ms) - t0 ))

# --- 3. No-change rescan (CLI process and daemon pass) ---------------------------------
t0=$(now_ms)
"$BIN" memory reindex >"$WORK/rescan.out"
cli_rescan_ms=$(( $(now_ms) - t0 ))

# --- 4. The daemon indexes the workspace itself from an empty cache ------------------
rm -f "$DB" "$DB-wal" "$DB-shm"
t0=$(now_ms)
"$BIN" daemon start --foreground 2>"$WORK/daemon.log" &
DAEMON_PID=$!
PIDFILE="$LOCALGPT_STATE_DIR/run/localgpt.pid"
ADDR=""
for _ in $(seq 1 600); do
    ADDR=$(sed -n 2p "$PIDFILE" 2>/dev/null || true)
    [[ -n "$ADDR" ]] && break
    sleep 0.01
done
[[ -n "$ADDR" ]] || { echo "daemon did not start:" >&2; cat "$WORK/daemon.log" >&2; exit 1; }
first_200_ms=""
for _ in $(seq 1 100000); do
    if [[ -z "$first_200_ms" ]] && curl -sf "http://$ADDR/health" >/dev/null; then
        first_200_ms=$(( $(now_ms) - t0 ))
    fi
    last=$(curl -sf "http://$ADDR/api/memory/stats" | sed -n 's/.*"last_indexed":"\([^"]*\)".*/\1/p' || true)
    [[ -n "$last" ]] && break
    sleep 0.05
done
daemon_full_ms=$(( $(now_ms) - t0 ))
rss_kb=$(ps -o rss= -p "$DAEMON_PID" | tr -d ' ')
hwm_kb=$(awk '/VmHWM/ { print $2 }' "/proc/$DAEMON_PID/status")
daemon_rescan_ms=$(curl -sf -X POST "http://$ADDR/api/memory/reindex" | sed -n 's/.*"duration_ms":\([0-9]*\).*/\1/p')
# A few more to take the median (the first may still see a cold page cache).
rescans=()
for _ in 1 2 3 4 5; do
    rescans+=("$(curl -sf -X POST "http://$ADDR/api/memory/reindex" | sed -n 's/.*"duration_ms":\([0-9]*\).*/\1/p')")
done
daemon_rescan_ms=$(printf '%s\n' "${rescans[@]}" | sort -n | sed -n 3p)
idle_rss_kb=$(ps -o rss= -p "$DAEMON_PID" | tr -d ' ')

# --- 5. Search latency ------------------------------------------------------------------
# percentile P (0-100) of numbers on stdin, in the unit given
pct() { sort -n | awk -v p="$1" '{ a[NR] = $1 } END { i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; printf "%.3f", a[i] }'; }

# What src/memory/query.rs makes of these inputs: terms lowercased, quoted, ANDed.
fts_expr() {
    local out="" t
    for t in $(tr '[:upper:]' '[:lower:]' <<<"$1" | tr -c '[:alnum:]\n' ' '); do
        out+="${out:+ AND }\"$t\""
    done
    printf '%s' "$out"
}

http_ms() { # query -> one line per request, milliseconds
    local url="http://$ADDR/api/memory/search?q=$(printf '%s' "$1" | sed 's/ /%20/g')"
    local args=() i
    for ((i = 0; i < RUNS; i++)); do args+=(-o /dev/null "$url"); done
    curl -s -w '%{time_total}\n' "${args[@]}" | awk '{ printf "%.3f\n", $1 * 1000 }'
}

sqlite_ms() { # query -> one line per run: real ms (1 ms resolution) and CPU ms (user+sys)
    local expr sql i
    expr=$(fts_expr "$1")
    sql="SELECT c.path, c.line_start, c.line_end, c.content, f.rank FROM (SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH '${expr//\'/\'\'}' ORDER BY rank LIMIT 10) AS f JOIN chunks AS c ON c.id = f.rowid ORDER BY f.rank;"
    {
        echo '.output /dev/null'
        echo '.timer on'
        for ((i = 0; i < RUNS; i++)); do echo "$sql"; done
    } | sqlite3 "$DB" | awk '/^Run Time/ { printf "%.3f %.3f\n", $4 * 1000, ($6 + $8) * 1000 }'
}

rg_ms() { # words -> one line per run, milliseconds (one pass, any term, case-insensitive)
    local args=() t i s
    for t in $1; do args+=(-e "$t"); done
    for ((i = 0; i < RG_RUNS; i++)); do
        s=${EPOCHREALTIME/./}
        rg -i -c "${args[@]}" "$WS" >/dev/null || true
        echo "$(( ${EPOCHREALTIME/./} - s ))" | awk '{ printf "%.3f\n", $1 / 1000 }'
    done
}

declare -A QUERIES=([rare]="quetzalcoatl" [common]="project" [multi]="deploy database migration")
# Warm the page cache and the daemon's reader connections.
for kind in rare common multi; do
    curl -s -o /dev/null "http://$ADDR/api/memory/search?q=$(printf '%s' "${QUERIES[$kind]}" | sed 's/ /%20/g')"
done

declare -A RES
for kind in rare common multi; do
    q="${QUERIES[$kind]}"
    http_ms "$q" >"$WORK/http.$kind"
    sqlite_ms "$q" >"$WORK/sqlite.$kind"
    rg_ms "$q" >"$WORK/rg.$kind"
    hits=$(curl -s "http://$ADDR/api/memory/search?q=$(printf '%s' "$q" | sed 's/ /%20/g')&limit=100" | sed -n 's/.*"total":\([0-9]*\).*/\1/p')
    RES[$kind.hits]=$hits
    RES[$kind.http50]=$(pct 50 <"$WORK/http.$kind")
    RES[$kind.http99]=$(pct 99 <"$WORK/http.$kind")
    RES[$kind.sqlr50]=$(cut -d' ' -f1 "$WORK/sqlite.$kind" | pct 50)
    RES[$kind.sqlc50]=$(cut -d' ' -f2 "$WORK/sqlite.$kind" | pct 50)
    RES[$kind.sqlc99]=$(cut -d' ' -f2 "$WORK/sqlite.$kind" | pct 99)
    RES[$kind.rg50]=$(pct 50 <"$WORK/rg.$kind")
    RES[$kind.rg99]=$(pct 99 <"$WORK/rg.$kind")
done
connects=$(curl -s -w '%{num_connects}\n' -o /dev/null "http://$ADDR/health" -o /dev/null "http://$ADDR/health" | paste -sd+ | bc)

kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || true
DAEMON_PID=""

# --- Report -----------------------------------------------------------------------------
verdict() { awk -v ok="$1" 'BEGIN { print (ok ? "ok" : "MISSED") }'; }
r2() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo
echo "== localgpt memory benchmark ($(nproc) cores, $(sqlite3 --version | cut -d' ' -f1) CLI vs bundled SQLite) =="
echo "workspace: $FILES Markdown files, $MB MB; $CHUNKS chunks holding $CHUNK_MB MB of text"
echo
ratio=$(r2 "$cli_full_ms" "$ours_full_ms")
echo "full index"
printf '  localgpt memory reindex (read, hash, chunk, insert): %6d ms  %6.1f MB/s of Markdown\n' \
    "$ours_full_ms" "$(awk -v b="$BYTES" -v t="$ours_full_ms" 'BEGIN { print b / 1048576 / (t / 1000) }')"
printf '  sqlite3 CLI bulk load of the same chunk rows:        %6d ms\n' "$cli_full_ms"
printf '  throughput ratio ours/CLI: %sx   (target >= 0.5x: %s)\n' "$ratio" "$(verdict "$(awk -v r="$ratio" 'BEGIN { print (r >= 0.5) }')")"
printf '  daemon, from process start to first index complete: %d ms (first /health 200 after %s ms)\n' \
    "$daemon_full_ms" "${first_200_ms:-?}"
echo
echo "no-change rescan"
printf '  daemon pass (POST /api/memory/reindex duration_ms, median of 5): %s ms  (target < 100 ms: %s)\n' \
    "$daemon_rescan_ms" "$(verdict "$(( daemon_rescan_ms < 100 ))")"
printf '  whole CLI process (open, load file list, walk, compare): %d ms\n' "$cli_rescan_ms"
echo
echo "search, $RUNS samples each (HTTP: wall time on one keep-alive connection, $connects new connections for 2 requests;"
echo "sqlite3: same SQL and FTS expression, CPU user+sys per statement, real time has 1 ms resolution)"
printf '  %-7s %-27s %6s  %-17s %-17s %-9s %-17s %s\n' kind query hits "HTTP p50/p99 ms" "sqlite3 p50/p99" "real p50" "rg p50/p99 ms" "p50 target"
for kind in rare common multi; do
    h50=${RES[$kind.http50]}; s50=${RES[$kind.sqlc50]}
    ok=$(awk -v h="$h50" -v s="$s50" 'BEGIN { print (h <= 1.5 * s || h <= s + 1) }')
    printf '  %-7s %-27s %6s  %7s / %-7s %7s / %-7s %-9s %7s / %-7s %s (%sx)\n' "$kind" "\"${QUERIES[$kind]}\"" "${RES[$kind.hits]}" \
        "$h50" "${RES[$kind.http99]}" "$s50" "${RES[$kind.sqlc99]}" "${RES[$kind.sqlr50]}" \
        "${RES[$kind.rg50]}" "${RES[$kind.rg99]}" "$(verdict "$ok")" "$(r2 "$h50" "$s50")"
done
echo
echo "daemon memory"
printf '  RSS after indexing: %d KiB (%.1f MiB); peak (VmHWM) during indexing: %.1f MiB; after 6 rescans: %.1f MiB\n' \
    "$rss_kb" "$(awk -v k="$rss_kb" 'BEGIN { print k / 1024 }')" "$(awk -v k="$hwm_kb" 'BEGIN { print k / 1024 }')" \
    "$(awk -v k="$idle_rss_kb" 'BEGIN { print k / 1024 }')"
