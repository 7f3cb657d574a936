# Sourced (not run) by the CI scripts that need a real `confiance serve` on loopback:
# .ci/ffi-c-example and .ci/uniffi.
#
#   serve_setup DIR CATALOGUE   the CLI (target/debug/confiance), a database and keys in DIR
#   serve_cli ARGS…             the CLI on that database, keys and catalogue, --json
#   serve_start [ARGS…]         starts `serve` on 127.0.0.1 (a free port); sets $server
#                               (its pid) and $url, and stops it on exit (every server
#                               started and not stopped)
#   serve_stop                  SIGTERM to $server, then waits for it to drain
#   serve_token_secret FILE     writes a new issuer secret (64 hex digits) for
#                               `serve_start --token-secret FILE`
#   json EXPR                   prints EXPR of the JSON document on stdin (`json '["n"]'`)

serve_setup() {
  serve_dir=$1 serve_catalogue=$2
  cargo build -q --workspace   # the workspace's one build (not -p: no rebuild under other features)
  mkdir -p "$serve_dir"
}

serve_cli() {
  ${serve_exec:+exec} target/debug/confiance --json --db "$serve_dir/db.sqlite" --keys "$serve_dir/keys" \
    --catalogue "$serve_catalogue" "$@"
}

json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

serve_pids=()

serve_start() {
  # A function sent to the background runs in a subshell: `exec` makes $! the server
  # itself, not a shell whose death (SIGTERM, the EXIT trap) would leave it running.
  serve_exec=1 serve_cli serve --addr 127.0.0.1:0 "$@" >"$serve_dir/serve.out" 2>"$serve_dir/serve.err" &
  server=$!
  serve_pids+=("$server")
  trap 'kill "${serve_pids[@]}" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do grep -q listening "$serve_dir/serve.out" 2>/dev/null && break; sleep 0.1; done
  url="http://$(head -1 "$serve_dir/serve.out" | json '["listening"]')"
}

serve_stop() {
  kill -TERM "$server" && wait "$server" || true
  local p rest=()
  for p in "${serve_pids[@]}"; do [ "$p" = "$server" ] || rest+=("$p"); done
  serve_pids=("${rest[@]}")
  [ ${#serve_pids[@]} -gt 0 ] || trap - EXIT
}

serve_token_secret() {
  python3 -c 'import secrets; print(secrets.token_hex(32))' >"$1"
}
