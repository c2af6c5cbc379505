#!/usr/bin/env bash
# The CI check of examples/verify/verify.py against live instances of the service: a fresh
# access token is accepted; a tampered one, one for another audience and an expired one are
# refused, each for its own reason.
#
#   bash examples/verify/check.sh [path/to/restful-auth]    (default: target/debug/restful-auth)
#
# The Python environment is kept in target/verify-venv and reused by later runs.
set -euo pipefail

binary=$(realpath "${1:-target/debug/restful-auth}")
cd "$(dirname "$0")/../.."
[ -x "$binary" ] || { echo "no service binary at $binary (cargo build first)" >&2; exit 1; }

venv=target/verify-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r examples/verify/requirements.txt
python=$venv/bin/python

work=$(mktemp -d)
pids=()
finish() {
    local status=$?
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$status" -ne 0 ]; then
        for log in "$work"/*.log; do
            [ -e "$log" ] && { echo "--- $log"; tail -n 20 "$log"; }
        done
    fi
    rm -rf "$work"
}
trap finish EXIT

# The issuer defaults to http://<--bind>, so instances on different ports would name different
# issuers, and with port 0 it would name port 0. Both instances therefore get instance 1's URL,
# which needs its port before it starts: ask the kernel for a free one.
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
public_url=http://127.0.0.1:$port

# start NAME BIND [FLAG...]: runs an instance on the shared database and sets $address to the
# address it listens on.
start() {
    local name=$1 bind=$2 log=$work/$1.log
    shift 2
    # Two instances at once: neither takes the default metrics port.
    "$binary" --database-url "sqlite://$work/db.sqlite3" --bind "$bind" --metrics-bind off \
        --public-url "$public_url" --access-token-lifetime 2s --log-format text "$@" serve >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        address=$(grep -o 'restful-auth listening address=[0-9.:]*' "$log" | cut -d= -f2) || true
        [ -n "$address" ] && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "instance $name did not start" >&2
    exit 1
}

post() { curl -sS --fail-with-body -H 'Content-Type: application/json' -d "$2" "$1"; }
access_token() { "$python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'; }
claim() { # claim TOKEN NAME: a claim of the token, read without verifying it
    "$python" -c 'import jwt, sys; print(jwt.decode(sys.argv[1], options={"verify_signature": False})[sys.argv[2]])' "$1" "$2"
}

# tampered TOKEN: the token with another user_id in its payload and its signature kept.
tampered() {
    "$python" - "$1" <<'EOF'
import base64, json, sys
header, payload, signature = sys.argv[1].split(".")
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
claims["user_id"] += 1
payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
print(".".join([header, payload, signature]))
EOF
}

failures=0
# expect VALID|REFUSED REASON WHAT TOKEN [--audience NAME]: runs verify.py against instance 1;
# a refusal counts only with the expected reason, so a token refused for another cause fails.
expect() {
    local want=$1 reason=$2 what=$3 output status=0
    shift 3
    output=$("$python" examples/verify/verify.py "$public_url" "$@" 2>&1) || status=$?
    if { [ "$want" = VALID ] && [ "$status" -eq 0 ]; } ||
        { [ "$want" = REFUSED ] && [ "$status" -eq 1 ] && [[ "$output" == *"$reason"* ]]; }; then
        echo "ok   $what: $output"
    else
        echo "FAIL $what: expected $want $reason, got exit status $status: $output"
        failures=$((failures + 1))
    fi
}

start restful-auth "127.0.0.1:$port"
echo "instance 1 (audience restful-auth) on $address"
start billing 127.0.0.1:0 --audience billing
echo "instance 2 (audience billing) on $address, same database and keys"
billing_url=http://$address

credentials='{"email": "verify@example.org", "password": "correct horse battery staple"}'
post "$public_url/api/register/" "$credentials" >/dev/null

token=$(post "$public_url/api/login/" "$credentials" | access_token)
expect VALID '' "(a) fresh token from instance 1" "$token"
expect REFUSED InvalidSignatureError "(b) tampered token (user_id changed, signature kept)" \
    "$(tampered "$token")"

billing_token=$(post "$billing_url/api/login/" "$credentials" | access_token)
expect REFUSED InvalidAudienceError "(c) instance 2's token (audience billing), verified for restful-auth" \
    "$billing_token"
# The control for (c): the same token verifies for its own audience, so the audience alone
# refused it, not the key or the issuer.
expect VALID '' "(c) control: instance 2's token verified for audience billing" \
    "$billing_token" --audience billing

# No leeway on either side: the token is dead from the second its exp names.
exp=$(claim "$token" exp)
wait_seconds=$((exp - $(date +%s) + 1))
[ "$wait_seconds" -le 0 ] || sleep "$wait_seconds"
expect REFUSED ExpiredSignatureError "(d) instance 1's token after its exp ($exp)" "$token"
me=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$public_url/api/me/")
if [ "$me" = 401 ]; then
    echo "ok   (d) control: the service refuses it too (401 at /api/me/)"
else
    echo "FAIL (d) control: the service answered $me for the expired token at /api/me/"
    failures=$((failures + 1))
fi

if [ "$failures" -ne 0 ]; then
    echo "verify example: $failures unexpected outcome(s)"
    exit 1
fi
echo "verify example: every outcome as expected"
