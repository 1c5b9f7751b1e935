# The gateway configurations the gateway benches measure, written into $WORK: plain routing
# with per-route metrics (gateway.toml), JWT + rate limit (gateway-jwt.toml) and the cache
# (gateway-cache.toml). Sourced by run.sh, profile.sh and instructions.sh, so all measure the
# same gateway.
# Needs WORK, P_UP and SECRET. MAX_HEADERS, when set, becomes `server.max_headers` (the parser's
# ceiling is twice it; 50 or less keeps hyper's per-request header arrays on the stack).

# The listener and the one upstream every configuration shares; $1 is max_connections.
gateway_config_head() {
  cat <<EOF
[server]
${MAX_HEADERS:+max_headers = $MAX_HEADERS}
max_connections = $1
upstream_pool_idle_per_host = 256
[[upstreams]]
name = "up"
urls = ["http://127.0.0.1:$P_UP"]
EOF
}

# nginx's side of the comparison, shared by run.sh and instructions.sh: the keep-alive upstream
# and the request headers a reverse proxy sets, as the gateway sets them.
nginx_proxy_settings() {
  cat <<EOF
  upstream up { server 127.0.0.1:$P_UP; keepalive 256; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host \$host;
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto \$scheme;
  proxy_set_header X-Request-Id \$request_id;
EOF
}

write_gateway_configs() {
  {
    gateway_config_head 12000
    cat <<EOF
[[routes]]
name = "users"
path = "/users/{id}"
upstream = "up"
[[routes]]
name = "all"
prefix = "/"
upstream = "up"
EOF
  } >"$WORK/gateway.toml"

  {
    gateway_config_head 4096
    cat <<EOF
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
  } >"$WORK/gateway-jwt.toml"

  {
    gateway_config_head 4096
    cat <<EOF
[[routes]]
name = "all"
prefix = "/"
upstream = "up"
cache = { enabled = true, default_ttl = "60s" }
EOF
  } >"$WORK/gateway-cache.toml"
}
