# The gateway configurations the gateway benches measure, written into $WORK: plain routing
# with per-route metrics (gateway.toml), JWT + rate limit (gateway-jwt.toml) and the cache
# (gateway-cache.toml). Sourced by run.sh and profile.sh, so both measure the same gateway.
# Needs WORK, P_UP and SECRET. MAX_HEADERS, when set, becomes `server.max_headers` (the parser's
# ceiling is twice it; 50 or less keeps hyper's per-request header arrays on the stack).
write_gateway_configs() {
  cat >"$WORK/gateway.toml" <<EOF
[server]
${MAX_HEADERS:+max_headers = $MAX_HEADERS}
max_connections = 12000
upstream_pool_idle_per_host = 256
[[upstreams]]
name = "up"
urls = ["http://127.0.0.1:$P_UP"]
[[routes]]
name = "users"
path = "/users/{id}"
upstream = "up"
[[routes]]
name = "all"
prefix = "/"
upstream = "up"
EOF

  cat >"$WORK/gateway-jwt.toml" <<EOF
[server]
${MAX_HEADERS:+max_headers = $MAX_HEADERS}
max_connections = 4096
upstream_pool_idle_per_host = 256
[[upstreams]]
name = "up"
urls = ["http://127.0.0.1:$P_UP"]
[[jwt]]
name = "main"
algorithm = "HS256"
secret = "$SECRET"
[[routes]]
name = "all"
prefix = "/"
upstream = "up"
auth = { jwt = "main", forward_claims = { sub = "x-user" } }
rate_limit = { requests = 1000000, per = "second", key = "client_ip" }
EOF

  cat >"$WORK/gateway-cache.toml" <<EOF
[server]
${MAX_HEADERS:+max_headers = $MAX_HEADERS}
max_connections = 4096
upstream_pool_idle_per_host = 256
[[upstreams]]
name = "up"
urls = ["http://127.0.0.1:$P_UP"]
[[routes]]
name = "all"
prefix = "/"
upstream = "up"
cache = { enabled = true, default_ttl = "60s" }
EOF
}
