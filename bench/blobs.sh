#!/usr/bin/env bash
# (c) Blob throughput: upload (PUT /api/v1/blobs) and download (GET /api/v1/device/blobs/SHA,
# signed as a box) of np-server vs the same file PUT to / served by nginx (Debian nginx-light,
# WebDAV PUT, sendfile) on 127.0.0.1, both with curl. Usage: bench/blobs.sh [--quick] [--runs N]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_part_args "$@"
need_pkgs nginx-light
need_bins np-server np-bench
bench_init
T="$BENCH_TMP"
start_server "$T/server" "$T/server.log"
install -m 0600 "$KEYS/TEST-ONLY-device.key" "$T/device.key"
api POST /api/v1/devices "{\"serial\": \"$BOX_SERIAL\", \"purchase_date\": \"$(date -u +%Y-%m-%d)\",
  \"customer\": \"np-bench\", \"device_key\": \"$(cat "$KEYS/TEST-ONLY-device.pub")\"}" >/dev/null

# nginx on a free loopback port, with a temp config; stopped by pid at exit.
port=""
for ((i = 0; i < 50; i++)); do
    p=$((20000 + RANDOM % 40000))
    ss -Hltn "sport = :$p" | grep -q . || { port=$p; break; }
done
[ -n "$port" ] || die "no free loopback port for nginx"
mkdir -p "$T/www/up" "$T/nginx"
cat > "$T/nginx.conf" <<CONF
daemon off;
user root root;
worker_processes 2;
pid $T/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    client_body_temp_path $T/www/tmp;
    proxy_temp_path $T/nginx/proxy; fastcgi_temp_path $T/nginx/fcgi;
    uwsgi_temp_path $T/nginx/uwsgi; scgi_temp_path $T/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        root $T/www;
        location /up/ { dav_methods PUT; client_max_body_size 0; create_full_put_path on; }
    }
}
CONF
nginx -c "$T/nginx.conf" -p "$T/nginx" &
NGINX_PID=$!
BENCH_PIDS+=("$NGINX_PID")
for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(cat "$T/nginx/error.log")"
    sleep 0.1
done

# fastest SECONDS of RUNS runs of a command (each after sync, and after $BEFORE_RUN when set:
# a signed device request is signed anew for every run, as the server refuses a replay)
fastest() {
    local best="" s r
    for ((r = 0; r < RUNS; r++)); do
        if [ -n "${BEFORE_RUN:-}" ]; then eval "$BEFORE_RUN"; fi
        sync
        timed "$T/t.x" "$@"
        s="$(secs_of "$T/t.x")"
        if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN{exit !(a<b)}'; then best="$s"; fi
    done
    echo "$best"
}

echo "## (c) blob throughput, np-server vs nginx on 127.0.0.1, curl (load $(load1), best of $RUNS)"
minor=0
for size in $(bench_sizes); do
    minor=$((minor + 1)); v="2.$minor.0"
    img="$T/n-reporter-$v.img"
    make_image "$img" "$size"
    up_np="$(fastest curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" -T "$img" "$SERVER_URL/api/v1/blobs")"
    up_ng="$(fastest curl -fsS -T "$img" "http://127.0.0.1:$port/up/image")"
    sha="$(openssl dgst -sha256 -r "$img" | cut -c1-64)"
    api POST /api/v1/releases "{\"version\": \"$v\", \"security_version\": 1, \"models\": [\"$BOX_MODEL\"],
      \"channel\": \"stable\", \"min_from_version\": \"0.1.0\", \"released_at\": \"2026-06-0${minor}T00:00:00Z\",
      \"image\": {\"name\": \"$(basename "$img")\", \"sha256\": \"$sha\"}, \"notes\": \"np-bench\"}" >/dev/null
    api PATCH "/api/v1/releases/$v" '{"rollout_percent": 100}' >/dev/null
    device_check_in 1.0.0 "$T/device.key"
    path="/api/v1/device/blobs/$sha"
    BEFORE_RUN='"$NP_BIN/np-bench" sign --serial "$BOX_SERIAL" --key "$T/device.key" --path "$path" > "$T/headers"'
    down_np="$(fastest curl -fsS -H @"$T/headers" -o /dev/null "$SERVER_URL$path")"
    BEFORE_RUN=""
    down_ng="$(fastest curl -fsS -o /dev/null "http://127.0.0.1:$port/up/image")"
    rm -f "$img" "$T/www/up/image"
    echo "  $(human "$size") upload:   np-server $(mbps "$size" "$up_np") MiB/s (${up_np}s), nginx $(mbps "$size" "$up_ng") MiB/s (${up_ng}s); np-server/nginx time ratio $(ratio "$up_np" "$up_ng")"
    echo "  $(human "$size") download: np-server $(mbps "$size" "$down_np") MiB/s (${down_np}s), nginx $(mbps "$size" "$down_ng") MiB/s (${down_ng}s); np-server/nginx time ratio $(ratio "$down_np" "$down_ng")"
done
echo "  np-server peak RSS $(awk '/VmHWM/{printf "%.1f MiB", $2/1024}' /proc/$SERVER_PID/status)"
