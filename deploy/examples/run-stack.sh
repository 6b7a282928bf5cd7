#!/usr/bin/env bash
# The full example stack on your machine, under warden: the sandbox Kite, the example FastAPI
# backend (official kiteconnect client, live KiteTicker feed) and the example Next.js frontend.
# Open http://127.0.0.1:3000: the feed drops every 2 minutes when the sandbox's token expires,
# and comes back without a restart once warden has logged in again. Ctrl-C stops everything.
#
# First run: a venv for the backend (pip, PyPI), node_modules from the lockfile (npm ci) and a
# production build of the frontend; warden is built with cargo unless WARDEN or PATH has one.
# STACK_PYTHON=python3 skips the venv when that python already has requirements.txt installed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
app="$here/app"
front="$app/frontend"
export STACK_APP="$app"
export STACK_STATE="${STACK_STATE:-$here/.stack}"
mkdir -p "$STACK_STATE"
# The sandbox's fake credentials (the defaults `warden sandbox kite` prints), as secret files
# the way systemd's LoadCredential= hands them over.
export CREDENTIALS_DIRECTORY="$STACK_STATE"
(
    umask 077
    printf 'kitefront-sandbox-secret\n' > "$STACK_STATE/kite_api_secret"
    printf 'sandbox-password\n' > "$STACK_STATE/kite_password"
    printf 'WARDENSANDBOXTOTPSECRETKITEAB234\n' > "$STACK_STATE/kite_totp_secret"
)

if [ -z "${WARDEN:-}" ]; then
  if command -v warden >/dev/null 2>&1; then
    WARDEN="$(command -v warden)"
  else
    echo "run-stack: building warden (cargo build --release)"
    (cd "$repo" && cargo build --release --quiet)
    WARDEN="$repo/target/release/warden"
  fi
fi

if [ -z "${STACK_PYTHON:-}" ]; then
  venv="$app/backend/.venv"
  if [ ! -x "$venv/bin/python" ] || [ "$app/backend/requirements.txt" -nt "$venv/.installed" ]; then
    echo "run-stack: installing the backend's packages into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet -r "$app/backend/requirements.txt"
    touch "$venv/.installed"
  fi
  STACK_PYTHON="$venv/bin/python"
fi
export STACK_PYTHON

if [ ! -d "$front/node_modules/next" ] || [ "$front/package-lock.json" -nt "$front/node_modules/.package-lock.json" ]; then
  echo "run-stack: npm ci (the frontend's lockfile)"
  (cd "$front" && npm ci --no-audit --no-fund)
fi
if [ ! -f "$front/.next/BUILD_ID" ] \
  || [ -n "$(find "$front/app" "$front/next.config.mjs" "$front/package-lock.json" -newer "$front/.next/BUILD_ID" -print -quit)" ]; then
  echo "run-stack: next build"
  (cd "$front" && NEXT_TELEMETRY_DISABLED=1 node node_modules/next/dist/bin/next build)
fi

cat <<MSG
run-stack: starting warden with $here/supervisor-stack.toml
  trading page   http://127.0.0.1:${FRONTEND_PORT:-3000}/
  warden status  http://127.0.0.1:${WARDEN_PORT:-9180}/
  expire now     curl -X POST http://127.0.0.1:${KITE_PORT:-9190}/_sandbox/expire
MSG
exec "$WARDEN" run -c "$here/supervisor-stack.toml"
