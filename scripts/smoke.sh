#!/usr/bin/env bash
# A curl-only walkthrough of a live localgpt daemon. Stops at the first wrong answer
# with a non-zero exit.
#
#   scripts/smoke.sh [BASE_URL]          default http://127.0.0.1:31327
#   LOCALGPT_TOKEN=...  sends 'Authorization: Bearer ...' (server.auth_token)
#   SMOKE_MODEL=...     the model for the chat step (default: the daemon's)
#
# The chat step makes one real model call through the daemon's default provider.
set -uo pipefail

BASE="${1:-${LOCALGPT_URL:-http://127.0.0.1:31327}}"
BASE="${BASE%/}"
AUTH=()
if [[ -n "${LOCALGPT_TOKEN:-}" ]]; then
    AUTH=(-H "Authorization: Bearer ${LOCALGPT_TOKEN}")
fi
command -v curl >/dev/null || { echo "smoke: curl is not installed" >&2; exit 2; }

step=0
BODY=""
STATUS=""

fail() {
    echo "FAIL  $*" >&2
    [[ -n "$BODY" ]] && echo "      last answer ($STATUS): ${BODY:0:400}" >&2
    exit 1
}

ok() {
    step=$((step + 1))
    printf 'ok %2d  %s\n' "$step" "$*"
}

# call METHOD PATH [JSON]: sets STATUS and BODY.
call() {
    local method=$1 path=$2 data=${3:-} out
    local args=(-sS -m 30 -X "$method" "${AUTH[@]}" -w '\n%{http_code}')
    [[ -n "$data" ]] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
    out=$(curl "${args[@]}" "$BASE$path") || fail "$method $path: curl could not complete the request"
    STATUS=${out##*$'\n'}
    BODY=${out%$'\n'*}
}

# expect STATUS TEXT...: the last answer has this status and contains every TEXT.
expect() {
    local want=$1 what=$2
    shift 2
    [[ "$STATUS" == "$want" ]] || fail "$what: status $STATUS, expected $want"
    local t
    for t in "$@"; do
        [[ "$BODY" == *"$t"* ]] || fail "$what: answer lacks $t"
    done
    ok "$what"
}

# field NAME: the first string value of NAME in BODY.
field() {
    sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" <<<"$BODY" | head -n 1
}

call GET /health
expect 200 "GET /health" '"status":"ok"'

call GET /api/status
expect 200 "GET /api/status" '"version"' '"uptime_seconds"' '"memory"' '"heartbeat"'
model=$(field model)

call GET /api/openapi.json
expect 200 "GET /api/openapi.json" '"openapi"' '"/api/chat/stream"'

call GET '/api/memory/search?q=memory&limit=3'
expect 200 "GET /api/memory/search" '"results"' '"total"'

call GET '/api/memory/search'
expect 400 "GET /api/memory/search without q is refused" '"code":"invalid_request"'

call GET /api/memory/stats
expect 200 "GET /api/memory/stats" '"workspace"' '"index"'

call POST /api/sessions '{}'
expect 201 "POST /api/sessions" '"session_id"'
sid=$(field session_id)
[[ -n "$sid" ]] || fail "POST /api/sessions: no session_id"

call GET /api/sessions
expect 200 "GET /api/sessions lists it" "\"$sid\""

chat_model=${SMOKE_MODEL:-$model}
stream=$(curl -sS -N -m 120 "${AUTH[@]}" -H 'Content-Type: application/json' \
    --data-binary "{\"message\":\"Say hello in five words.\",\"session_id\":\"$sid\",\"model\":\"$chat_model\"}" \
    "$BASE/api/chat/stream") || fail "POST /api/chat/stream: curl could not complete the stream"
BODY=$stream
STATUS=stream
[[ "$stream" == *'"type":"session"'* ]] || fail "chat stream: no session event"
[[ "$stream" != *'"type":"error"'* ]] || fail "chat stream: an error event"
[[ "$stream" == *'"type":"content"'* ]] || fail "chat stream: no content event"
[[ "$stream" == *'"type":"done"'* ]] || fail "chat stream: no done event"
[[ "$stream" == *'data: [DONE]'* ]] || fail "chat stream: no [DONE]"
ok "POST /api/chat/stream with curl -N ($chat_model): $(grep -c '"type":"content"' <<<"$stream") content events"

call GET "/api/sessions/$sid"
expect 200 "GET /api/sessions/{id} holds the turn" '"message_count":2' '"role":"assistant"'

call DELETE "/api/sessions/$sid"
expect 200 "DELETE /api/sessions/{id}" '"deleted":true'

call GET "/api/sessions/$sid"
expect 404 "the deleted session is gone" '"code":"not_found"'

echo "smoke: all $step steps passed against $BASE"
