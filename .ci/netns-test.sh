#!/usr/bin/env bash
# Across hosts behind a firewall, for real: procshared in one network
# namespace, clients in another, joined by a veth pair, with a firewall in the
# server's namespace that drops every port but the server's.
#
# Checks that
#   0. without the firewall, both procshared (open and blocked port) answer;
#   1. clients work across the namespaces over the one open port, with TLS
#      and a token (a queue shared by a blocked consumer and a producer, a
#      dict, an atomic counter);
#   2. a client without the token is refused (UNAUTHENTICATED, exit 1);
#   3. a client of a procshared listening on a blocked port fails with
#      UNAVAILABLE within its connect deadline instead of hanging.
#
# Needs root and `ip netns`; where they are not allowed it prints why and
# exits 0. The firewall is nftables, else iptables, installed with apt-get if
# missing; if neither can be had it says so and exits 0. All traffic stays
# inside the two namespaces this script makes (and removes at exit).
#
#   bash .ci/netns-test.sh            (from anywhere in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "netns-test: $*"; }
skip() {
    say "SKIPPED: $*"
    exit 0
}

[ "$(id -u)" -eq 0 ] || skip "needs root (ip netns, veth, firewall rules)"
command -v ip >/dev/null 2>&1 || skip "the ip command (iproute2) is missing"

tag="ps$$"
srv_ns="${tag}-srv"
cli_ns="${tag}-cli"
# A private /30 that exists only between the two namespaces made here.
srv_ip=10.203.$(($$ % 250)).1
cli_ip=10.203.$(($$ % 250)).2
open_port=50051
blocked_port=50052
work=$(mktemp -d)
pids=()

cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    ip netns del "$srv_ns" 2>/dev/null || true
    ip netns del "$cli_ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if ! ip netns add "$srv_ns" 2>"$work/err"; then
    skip "ip netns is not allowed here: $(head -1 "$work/err")"
fi
ip netns add "$cli_ns"

# --- the firewall tool ---------------------------------------------------------
have_fw() { command -v nft >/dev/null 2>&1 || command -v iptables >/dev/null 2>&1; }
if ! have_fw && command -v apt-get >/dev/null 2>&1; then
    say "installing nftables"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >"$work/apt" 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >"$work/apt" 2>&1 || true
    fi
fi
have_fw || skip "neither nft nor iptables is available, and apt-get could not install nftables"

# --- the binaries ----------------------------------------------------------------
cargo build -q -p procshare-server --bin procshared -p procshare --bin procshare
target=${CARGO_TARGET_DIR:-$PWD/target}
procshared="$target/debug/procshared"
procshare="$target/debug/procshare"

# --- the network -------------------------------------------------------------------
ip link add "${tag}a" type veth peer name "${tag}b"
ip link set "${tag}a" netns "$srv_ns"
ip link set "${tag}b" netns "$cli_ns"
ip -n "$srv_ns" addr add "$srv_ip/30" dev "${tag}a"
ip -n "$cli_ns" addr add "$cli_ip/30" dev "${tag}b"
for ns in "$srv_ns" "$cli_ns"; do ip -n "$ns" link set lo up; done
ip -n "$srv_ns" link set "${tag}a" up
ip -n "$cli_ns" link set "${tag}b" up

# --- the servers -----------------------------------------------------------------
bash deploy/make-certs.sh "$work/certs" "$srv_ip" >/dev/null
token=$(openssl rand -hex 32)
printf '%s\n' "$token" >"$work/token"
chmod 600 "$work/token"

# start_server PORT NAME: procshared in the server's namespace, with TLS and
# the token, listening on PORT; waits (30 s at most) for its `listening on`
# line, read through a FIFO that stays open until the end.
start_server() {
    local port=$1 name=$2 fd line
    mkfifo "$work/$name.fifo"
    ip netns exec "$srv_ns" "$procshared" --listen "$srv_ip:$port" \
        --token-file "$work/token" \
        --tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server.key" \
        --keepalive-interval 5 --log-level warn >"$work/$name.fifo" 2>"$work/$name.err" &
    pids+=($!)
    exec {fd}<"$work/$name.fifo"
    if read -r -t 30 -u "$fd" line && [[ "$line" == "listening on "* ]]; then
        return 0
    fi
    say "procshared on port $port did not start: $(cat "$work/$name.err")"
    return 1
}
start_server "$open_port" open
# A second procshared on a port the firewall drops: reachable without the
# firewall, so a failure to reach it is the firewall's doing.
start_server "$blocked_port" blocked

# client ARGS…: the CLI in the client's namespace, over TLS, with the token.
client() {
    ip netns exec "$cli_ns" env PROCSHARE_TOKEN="$token" \
        "$procshare" --url "https://$srv_ip:$open_port" --ca "$work/certs/ca.pem" "$@"
}

# Before the firewall, both servers answer: what fails later fails because
# of the firewall.
for port in "$open_port" "$blocked_port"; do
    if ! ip netns exec "$cli_ns" env PROCSHARE_TOKEN="$token" "$procshare" \
        --url "https://$srv_ip:$port" --ca "$work/certs/ca.pem" ping >/dev/null; then
        say "FAILED: without a firewall, procshared on port $port does not answer"
        exit 1
    fi
done

# In the server's namespace: drop everything that arrives, except loopback,
# replies to what the server itself sent, and new connections to the one port.
if command -v nft >/dev/null 2>&1; then
    fw=nftables
    ip netns exec "$srv_ns" nft -f - <<EOF
table inet procshare_test {
    chain input {
        type filter hook input priority 0; policy drop;
        iif lo accept
        ct state established,related accept
        tcp dport $open_port accept
    }
}
EOF
else
    fw=iptables
    ip netns exec "$srv_ns" iptables -P INPUT DROP
    ip netns exec "$srv_ns" iptables -A INPUT -i lo -j ACCEPT
    ip netns exec "$srv_ns" iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    ip netns exec "$srv_ns" iptables -A INPUT -p tcp --dport "$open_port" -j ACCEPT
fi
say "namespaces $srv_ns ($srv_ip) and $cli_ns ($cli_ip), firewall: $fw, open port $open_port only"

passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        say "ok: $name"
    else
        failed=$((failed + 1))
        say "FAILED: $name"
    fi
}

# 1. Clients work across: a consumer blocked on an empty queue gets what a
#    producer puts; a dict and an atomic counter.
across() {
    client ping >/dev/null || return 1
    client queue get jobs --timeout 30 >"$work/consumer.out" 2>"$work/consumer.err" &
    local consumer=$!
    pids+=("$consumer")
    # Wait (on the server's own account) until the consumer is blocked.
    local i
    for i in $(seq 300); do
        if client describe jobs 2>/dev/null | grep -q '"waiters":1'; then break; fi
    done
    client queue put jobs '"job-1"' || return 1
    wait "$consumer" || { cat "$work/consumer.err"; return 1; }
    [ "$(cat "$work/consumer.out")" = '"job-1"' ] || return 1
    client dict set results '"job-1"' '"done"' || return 1
    [ "$(client dict get results '"job-1"')" = '"done"' ] || return 1
    client value set counter 0 || return 1
    for i in 1 2 3; do client value add counter 1 >/dev/null || return 1; done
    [ "$(client value get counter)" = 3 ]
}
check "clients in another namespace share a queue, a dict and a counter over port $open_port (TLS + token)" across

# 2. Without the token: refused.
no_token() {
    local rc=0
    ip netns exec "$cli_ns" env -u PROCSHARE_TOKEN "$procshare" \
        --url "https://$srv_ip:$open_port" --ca "$work/certs/ca.pem" ping \
        >/dev/null 2>"$work/notoken.err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q unauthenticated "$work/notoken.err"
}
check "a client without the token is refused (unauthenticated)" no_token

# 3. A blocked port: UNAVAILABLE within the client's connect deadline (5 s);
#    `timeout` is the backstop that catches a hang.
blocked() {
    local rc=0
    timeout 60 ip netns exec "$cli_ns" env PROCSHARE_TOKEN="$token" "$procshare" \
        --url "https://$srv_ip:$blocked_port" --ca "$work/certs/ca.pem" ping \
        >/dev/null 2>"$work/blocked.err" || rc=$?
    if [ "$rc" -eq 124 ]; then
        say "the client on the blocked port hung"
        return 1
    fi
    cat "$work/blocked.err"
    [ "$rc" -eq 1 ] && grep -q unavailable "$work/blocked.err"
}
check "a client on blocked port $blocked_port fails with unavailable within its deadline" blocked

# 4. The server is still healthy after all that.
alive() { client ping >/dev/null; }
check "the server still answers" alive

say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
