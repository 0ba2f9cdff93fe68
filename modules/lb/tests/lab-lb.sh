#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# lab-lb.sh — the lb module in a two-node lab: backends as pods on both
# nodes (a small python3 HTTP + TCP echo + UDP server), a client pod on node 1
# whose processes run in node 1's cgroup so the socket LB applies to them.
# Checks: ClusterIP over TCP (curl) and UDP, IPv4 and IPv6, reaching every
# backend; scale the EndpointSlice down and up; internalTrafficPolicy=Local;
# ClientIP affinity sticking; no endpoints -> ECONNREFUSED; kill -9 of the
# agent while a long-lived TCP stream runs (no reset, new connections still
# work, restart converges).
#
# Needs root (exit 77 otherwise), /usr/bin/python3, curl, jq and a staged
# install (make stage). All traffic stays in the lab's namespaces.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

AXN_SRC=${AXN_SRC:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../../.." && pwd -P)}
# shellcheck source=../../../tests/lab/lab.sh
. "$AXN_SRC/tests/lab/lab.sh"
# shellcheck source=../../../tests/lab/check.sh
. "$AXN_SRC/tests/lab/check.sh"

lab_require_root
PY=/usr/bin/python3
for t in "$PY" curl jq; do
	command -v "$t" >/dev/null || { echo "SKIP: needs $t"; exit 77; }
done
if ! LAB_STAGE=$(lab_find_stage); then
	echo "FAIL: no staged install (run 'make stage' in the build dir)" >&2
	exit 99
fi
lab_find_bins
[ -f "$LAB_MODULEDIR/lb.so" ] || { echo "FAIL: no lb.so in $LAB_MODULEDIR" >&2; exit 99; }

lab_init "axlb$$"
lab_cleanup_trap
t_logs_on_failure 25 1 2

echo "lab:   $LAB_WORK (prefix $LAB_PREFIX)"

# ---------------------------------------------------------------- programs
cat >"$LAB_WORK/srv.py" <<'EOF'
# Backend: HTTP on 8080 answers the pod name, TCP echo on 9000, UDP on 5353 and 5354 answers the pod name.
import socket, sys, threading
name = sys.argv[1].encode()
def sock(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    return s
def http():
    s = sock(socket.SOCK_STREAM); s.bind(("::", 8080)); s.listen(128)
    while True:
        c, _ = s.accept()
        try:
            c.recv(4096)
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
        finally:
            c.close()
def echo_conn(c):
    while True:
        d = c.recv(4096)
        if not d:
            break
        c.sendall(d)
    c.close()
def echo():
    s = sock(socket.SOCK_STREAM); s.bind(("::", 9000)); s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo_conn, args=(c,), daemon=True).start()
def udp(port=5353):
    s = sock(socket.SOCK_DGRAM); s.bind(("::", port))
    while True:
        d, a = s.recvfrom(2048)
        s.sendto(name, a)
for f in (http, echo, lambda: udp(5354)):
    threading.Thread(target=f, daemon=True).start()
udp()
EOF
cat >"$LAB_WORK/cli.py" <<'EOF'
# Client: udp VIP PORT N | refused VIP PORT | stream VIP PORT SECONDS | udpconn VIP PORT SECONDS
import errno, socket, sys, time
mode, vip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
if mode == "udp":
    names = []
    for _ in range(int(sys.argv[4])):
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
        s.sendto(b"hi", (vip, port))
        d, a = s.recvfrom(2048)
        if a[0] != vip or a[1] != port:
            print("BADSOURCE", a); sys.exit(1)
        names.append(d.decode()); s.close()
    print(" ".join(sorted(set(names))))
elif mode == "refused":
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(3)
    try:
        s.connect((vip, port)); print("connected")
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e)))
elif mode == "stream":
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(2)
    s.connect((vip, port))
    end, sent, ok, err = time.time() + float(sys.argv[4]), 0, 0, ""
    sys.stdout.write("connected\n"); sys.stdout.flush()
    try:
        while time.time() < end:
            s.sendall(b"x" * 64); sent += 1
            got = b""
            while len(got) < 64:
                d = s.recv(64 - len(got))
                if not d:
                    raise OSError("closed by peer")
                got += d
            ok += 1
            time.sleep(0.02)
    except OSError as e:
        err = str(e)
    print("sent=%d ok=%d err=%s" % (sent, ok, err or "none"))
elif mode == "udpconn":
    # One connected UDP socket, asking every 0.1 s. Closed under it, recv() says ECONNABORTED
    # and send() EDESTADDRREQ (it is not connected any more): connect again.
    def conn():
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(0.5); s.connect((vip, port))
        return s
    end, s, first, aborted, after = time.time() + float(sys.argv[4]), conn(), None, False, None
    while time.time() < end:
        try:
            s.send(b"hi"); d = s.recv(2048).decode()
        except socket.timeout:
            continue
        except OSError as e:
            if e.errno not in (errno.ECONNABORTED, errno.EDESTADDRREQ):
                print("error", e); sys.exit(1)
            aborted = True; s.close(); s = conn()
            continue
        if first is None:
            first = d; sys.stdout.write("first=%s\n" % d); sys.stdout.flush()
        elif aborted and after is None:
            after = d
        time.sleep(0.1)
    print("first=%s aborted=%s after=%s" % (first, "yes" if aborted else "no", after))
EOF

# Run CMD inside pod POD, as a process of node NODE's cgroup (so the node's socket LB applies).
in_pod() { # NODE POD CMD...
	local n=$1 pod=$2
	shift 2
	sh -c 'echo $$ > "$0/cgroup.procs" && ns=$1 && shift && exec ip netns exec "$ns" "$@"' \
		"$(lab_cgroup "$n")" "$(lab_ns "$pod")" "$@"
}
# Backend names answering N curls to URL, sorted and unique.
curl_names() { # URL N
	local i out=""
	for ((i = 0; i < $2; i++)); do
		out+="$(in_pod 1 cli curl -sS -m 2 -g "$1" 2>&1)"$'\n'
	done
	printf '%s' "$out" | sort -u | tr '\n' ' ' | sed 's/ $//'
}
# Wait (up to 5 s) until curl_names URL N equals WANT.
wait_names() { # URL N WANT
	local i got=""
	for ((i = 0; i < 25; i++)); do
		got=$(curl_names "$1" "$2")
		[ "$got" = "$3" ] && break
		sleep 0.2
	done
	printf '%s' "$got"
}

# ---------------------------------------------------------------- lab
t_step "lab: 2 nodes; backends be1 (node 1), be2 + be3 (node 2); client pod cli on node 1"
lab_node 1
lab_node 2
lab_pod 1 be1
lab_pod 1 cli
lab_pod 2 be2
lab_pod 2 be3
for p in be1 be2 be3; do
	lab_spawn "$p" "srv-$p" "$PY" "$LAB_WORK/srv.py" "$p"
done

# The manifests, the same on both nodes (statedir stands in for the API server).
ep() { # POD NODE READY
	printf '{"addresses":["%s"],"nodeName":"node%s","conditions":{"ready":%s,"serving":%s,"terminating":false}}' \
		"$4" "$2" "$3" "$3"
}
slices() { # SVC PODS... -> two slices (IPv4, IPv6) with the given pods
	local svc=$1 p e4="" e6="" n
	shift
	for p in "$@"; do
		n=$(sed -n 's/^node=//p' "$LAB_WORK/.pods/$p")
		e4+="${e4:+,}$(ep "$p" "$n" true "$(lab_pod_ip4 "$p")")"
		e6+="${e6:+,}$(ep "$p" "$n" true "$(lab_pod_ip6 "$p")")"
	done
	local ports=${SLICE_PORTS:-'[{"name":"http","port":8080,"protocol":"TCP"},{"name":"echo","port":9000,"protocol":"TCP"},{"name":"dns","port":5353,"protocol":"UDP"}]'}
	for fam in 4 6; do
		local eps=$e4 at=IPv4
		[ "$fam" = 6 ] && eps=$e6 && at=IPv6
		printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"%s-v%s","namespace":"lab","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"%s","ports":%s,"endpoints":[%s]}\n' \
			"$svc" "$fam" "$svc" "$at" "$ports" "$eps"
	done
}
service() { # NAME IP4 IP6 EXTRA_SPEC
	printf '{"apiVersion":"v1","kind":"Service","metadata":{"name":"%s","namespace":"lab"},"spec":{"type":"ClusterIP","clusterIP":"%s","clusterIPs":["%s","%s"],"ipFamilies":["IPv4","IPv6"],"ports":[{"name":"http","port":80,"targetPort":"http"},{"name":"echo","port":9000,"targetPort":9000},{"name":"dns","port":53,"protocol":"UDP","targetPort":5353}]%s}}\n' \
		"$1" "$2" "$2" "$3" "${4:-}"
}
write_state() { # FILE CONTENT (JSON documents, one per line) -> on both nodes, atomically
	local n
	for n in 1 2; do
		printf '%s' "$2" | jq -s '{"apiVersion":"v1","kind":"List","items":.}' >"$(lab_statedir "$n")/.$1.tmp"
		mv "$(lab_statedir "$n")/.$1.tmp" "$(lab_statedir "$n")/$1.json"
	done
}
write_state web "$(service web 10.96.0.10 fd00:96::10; slices web be1 be2 be3)"
write_state local "$(service local 10.96.0.11 fd00:96::11 ',"internalTrafficPolicy":"Local"'; slices local be1 be2 be3)"
write_state sticky "$(service sticky 10.96.0.12 fd00:96::12 ',"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":4}}'; slices sticky be1 be2 be3)"
write_state empty "$(service empty 10.96.0.13 fd00:96::13)"

for n in 1 2; do
	lab_conf "$n" - <<-EOF
		modules = ( "statedir", "lb" );
		statedir: { path = "$(lab_statedir "$n")"; };
		lb: { cgroup = "$(lab_cgroup_agent "$n")"; };
	EOF
done

t_step "start the agents"
for n in 1 2; do
	if lab_agent_start "$n"; then
		t_ok "node $n: agent ready in ${LAB_READY_WALL_MS} ms"
	else
		t_fail "node $n: agent starts"
		t_summary || exit 1
	fi
done
lab_wait_log 1 'in sync' 5 || true
svcs=$(lab_axoneme 1 -o json lb services)
t_expect "lb services: 4 services x 3 ports x 2 families = 24 frontends" 24 "$(jq '.items | length' <<<"$svcs")"
t_expect "web's IPv4 http frontend has 3 active backends" 3 \
	"$(jq '[.items[] | select(.frontend == "10.96.0.10:80/TCP") | .backends[]] | length' <<<"$svcs")"
t_expect "lb bpf (raw maps) shows 24 masters" 24 "$(lab_axoneme 1 -o json lb bpf | jq '.items | length')"
t_expect "axoneme service list (Cilium's spelling) is the same view" "$(jq -c . <<<"$svcs")" \
	"$(lab_axoneme 1 -o json service list | jq -c .)"
t_expect "axoneme bpf lb list is the raw view" 24 "$(lab_axoneme 1 -o json bpf lb list | jq '.items | length')"
t_expect "8 socket LB programs attached to node 1's cgroup" 8 \
	"$(lab_axoneme 1 -o json hooks | jq '[.items[] | select(.module == "lb")] | length')"

t_step "ClusterIP over TCP and UDP, IPv4 and IPv6, reaches every backend"
t_expect "curl http://10.96.0.10/ x30" "be1 be2 be3" "$(curl_names http://10.96.0.10/ 30)"
t_expect "curl http://[fd00:96::10]/ x30" "be1 be2 be3" "$(curl_names 'http://[fd00:96::10]/' 30)"
t_expect "UDP 10.96.0.10:53 x30 (replies come from the VIP)" "be1 be2 be3" \
	"$(in_pod 1 cli "$PY" "$LAB_WORK/cli.py" udp 10.96.0.10 53 30 2>&1)"
t_expect "UDP [fd00:96::10]:53 x30" "be1 be2 be3" \
	"$(in_pod 1 cli "$PY" "$LAB_WORK/cli.py" udp fd00:96::10 53 30 2>&1)"
t_expect "outside node 1's cgroup the VIP is not translated (nothing listens on it)" "000" \
	"$(lab_exec cli curl -s -o /dev/null -w '%{http_code}' -m 1 http://10.96.0.10/ 2>/dev/null || true)"

t_step "scale the EndpointSlice down and up"
write_state web "$(service web 10.96.0.10 fd00:96::10; slices web be2)"
t_expect "down to be2 only" "be2" "$(wait_names http://10.96.0.10/ 15 be2)"
t_expect "down to be2 only (IPv6)" "be2" "$(wait_names 'http://[fd00:96::10]/' 15 be2)"
write_state web "$(service web 10.96.0.10 fd00:96::10; slices web be1 be2 be3)"
t_expect "back to three" "be1 be2 be3" "$(wait_names http://10.96.0.10/ 30 'be1 be2 be3')"

t_step "internalTrafficPolicy=Local: node 1's client only reaches node 1's backend"
t_expect "curl 10.96.0.11 x20" "be1" "$(curl_names http://10.96.0.11/ 20)"
t_expect "curl [fd00:96::11] x20" "be1" "$(curl_names 'http://[fd00:96::11]/' 20)"

t_step "sessionAffinity ClientIP (timeout 4 s) sticks"
first=$(curl_names http://10.96.0.12/ 1)
t_expect "10 connections within the timeout go to one backend" "$first" "$(curl_names http://10.96.0.12/ 10)"
sleep 1
t_expect "still the same after 1 s (refreshed per connection)" "$first" "$(curl_names http://10.96.0.12/ 5)"

t_step "a service without endpoints refuses at once"
t_expect "connect to 10.96.0.13:80" "ECONNREFUSED" "$(in_pod 1 cli "$PY" "$LAB_WORK/cli.py" refused 10.96.0.13 80)"
t_expect "connect to [fd00:96::13]:80" "ECONNREFUSED" "$(in_pod 1 cli "$PY" "$LAB_WORK/cli.py" refused fd00:96::13 80)"

t_step "kill -9 the agent while a long-lived TCP stream runs"
sh -c 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$1" "$2" "$3" stream 10.96.0.10 9000 6' \
	"$(lab_cgroup 1)" "$(lab_ns cli)" "$PY" "$LAB_WORK/cli.py" >"$LAB_WORK/stream.out" 2>&1 &
STREAM=$!
sleep 1
lab_agent_stop 1 KILL >/dev/null 2>&1 || true
t_expect "agent on node 1 killed with SIGKILL" "137" "${LAB_AGENT_RC:-?}"
t_expect "while it is down, new connections still work" "be1 be2 be3" "$(curl_names http://10.96.0.10/ 30)"
write_state web "$(service web 10.96.0.10 fd00:96::10; slices web be1 be3)"
if lab_agent_start 1; then t_ok "restarted in ${LAB_READY_WALL_MS} ms"; else t_fail "restart"; fi
t_check "the restarted agent adopted the pinned maps" lab_wait_log 1 'adopted [1-9][0-9]* frontends' 5
t_expect "restart converges on the change made while it was down" "be1 be3" \
	"$(wait_names http://10.96.0.10/ 20 'be1 be3')"
wait "$STREAM" || true
stream=$(tail -n 1 "$LAB_WORK/stream.out")
case "$stream" in
sent=*" err=none") t_ok "the stream ran through kill and restart without a reset ($stream)" ;;
*) t_fail "the stream ran through kill and restart without a reset" "$(cat "$LAB_WORK/stream.out")" ;;
esac
t_expect "after the restart: still 24 frontends, 8 programs" "24 8" \
	"$(lab_axoneme 1 -o json lb services | jq '.items | length') $(lab_axoneme 1 -o json hooks | jq '[.items[] | select(.module == "lb")] | length')"
t_expect "lb health is up" "up" "$(lab_axoneme 1 -o json status | jq -r '.modules[] | select(.name == "lb") | .health')"

t_step "connected UDP: a socket whose backend is removed is closed, and connects again elsewhere"
# A service of its own on 5354, so that its backends are no other service's.
udpc() { # PODS...
	printf '{"apiVersion":"v1","kind":"Service","metadata":{"name":"udpc","namespace":"lab"},"spec":{"type":"ClusterIP","clusterIP":"10.96.0.14","clusterIPs":["10.96.0.14"],"ports":[{"name":"dns2","port":53,"protocol":"UDP","targetPort":5354}]}}\n'
	SLICE_PORTS='[{"name":"dns2","port":5354,"protocol":"UDP"}]' slices udpc "$@"
}
write_state udpc "$(udpc be1 be2 be3)"
for _ in $(seq 50); do
	[ "$(in_pod 1 cli "$PY" "$LAB_WORK/cli.py" udp 10.96.0.14 53 1 2>/dev/null)" ] && break
	sleep 0.1
done
sh -c 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$1" "$2" "$3" udpconn 10.96.0.14 53 5' \
	"$(lab_cgroup 1)" "$(lab_ns cli)" "$PY" "$LAB_WORK/cli.py" >"$LAB_WORK/udpconn.out" 2>&1 &
UDPC=$!
first=""
for _ in $(seq 30); do
	first=$(sed -n 's/^first=\(be[0-9]\)$/\1/p' "$LAB_WORK/udpconn.out")
	[ -n "$first" ] && break
	sleep 0.1
done
rest=$(for p in be1 be2 be3; do [ "$p" = "$first" ] || printf '%s ' "$p"; done)
# shellcheck disable=SC2086 # the pods, one word each
write_state udpc "$(udpc $rest)"
wait "$UDPC" || true
udpconn=$(tail -n 1 "$LAB_WORK/udpconn.out")
case "$udpconn" in
"first=$first aborted=yes after="be[0-9])
	if [ -n "$first" ] && [ "${udpconn##*after=}" != "$first" ]; then
		t_ok "closed when $first left the service, then answered by another pod ($udpconn)"
	else
		t_fail "connected UDP moves to another backend" "$udpconn"
	fi
	;;
*) t_fail "connected UDP moves to another backend" "$(cat "$LAB_WORK/udpconn.out")" ;;
esac
t_check "node 1 says it closed the socket" lab_wait_log 1 'closed 1 connected UDP socket' 5

t_summary
