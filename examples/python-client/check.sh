#!/usr/bin/env bash
# The CI check that the OpenAPI documents are usable by real tools: a live instance's
# /api/schema/ and /admin/schema/ pass openapi-spec-validator, a Python client is generated from
# /api/schema/ by openapi-python-client (any warning fails), and smoke.py registers, logs in,
# reads the profile, refreshes and logs out through it, checking every answer.
#
#   bash examples/python-client/check.sh [path/to/restful-auth]    (default: target/debug/restful-auth)
#
# The Python environment is kept in target/python-client-venv and reused by later runs; the
# generated client is written to target/python-client/.
set -euo pipefail

binary=$(realpath "${1:-target/debug/restful-auth}")
cd "$(dirname "$0")/../.."
[ -x "$binary" ] || { echo "no service binary at $binary (cargo build first)" >&2; exit 1; }

here=examples/python-client
venv=target/python-client-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
python=$venv/bin/python

work=$(mktemp -d)
pid=
finish() {
    local status=$?
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ "$status" -ne 0 ] && [ -e "$work/service.log" ]; then
        echo "--- service log"; tail -n 20 "$work/service.log"
    fi
    rm -rf "$work"
}
trap finish EXIT

# The document names --public-url as its server, which needs the port before the start: ask
# the kernel for a free one.
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
public_url=http://127.0.0.1:$port
"$binary" --database-url "sqlite://$work/db.sqlite3" --bind "127.0.0.1:$port" \
    --public-url "$public_url" --admin-bind 127.0.0.1:0 --log-format text serve \
    >"$work/service.log" 2>&1 &
pid=$!
admin=
for _ in $(seq 1 100); do
    admin=$(grep -o 'admin API listening address=[0-9.:]*' "$work/service.log" | cut -d= -f2) || true
    [ -n "$admin" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$admin" ] || { echo "the service did not start" >&2; exit 1; }

curl -sS --fail "$public_url/api/schema/" -o "$work/api.json"
curl -sS --fail "http://$admin/admin/schema/" -o "$work/admin.json"
"$venv/bin/openapi-spec-validator" "$work/api.json" "$work/admin.json"

rm -rf target/python-client && mkdir -p target/python-client
"$venv/bin/openapi-python-client" generate --path "$work/api.json" --meta none \
    --output-path target/python-client/restful_auth_client --config "$here/generator.yaml" \
    --fail-on-warning
PYTHONPATH=target/python-client "$python" "$here/smoke.py" "$public_url"
