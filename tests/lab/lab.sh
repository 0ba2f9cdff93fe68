# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# shellcheck disable=SC2034 # LAB_* variables are set for the caller
#
# tests/lab/lab.sh — build a small cluster out of network namespaces and run
# one axonemed per "node". Source it from a bash script that runs as root:
#
#   . "$AXN_SRC/tests/lab/lab.sh"
#   lab_require_root                 # exit 77 with a reason when not root
#   lab_init "axl$$"                 # private work dir, bpffs, cgroup parent
#   lab_cleanup_trap                 # lab_down on EXIT / INT / TERM
#   lab_node 1; lab_node 2           # (creates the LAN bridge on first use)
#   lab_pod 1 web                    # optional: pods, router, client
#   lab_agent_start 1                # axonemed in node 1's netns, waits for ready
#   lab_axoneme 1 status             # the CLI against node 1's socket
#
# See tests/lab/README.md for the address plan and every function.
#
# All state lives in files under $LAB_WORK, so functions also work from
# subshells. Functions report errors on stderr ("lab: ...") and return
# non-zero; they do not rely on `set -e`, which bash ignores inside functions
# called from `if`, `&&` or `||`.

# ---------------------------------------------------------------- settings
: "${LAB_AGENT_TIMEOUT:=10}"  # seconds lab_agent_start waits for ready
: "${LAB_STOP_TIMEOUT:=10}"   # seconds lab_agent_stop waits for exit
: "${LAB_READY_BY:=either}"   # log | socket | either: what counts as ready
: "${LAB_METRICS:=127.0.0.1:9962}" # inside each node netns: its own loopback
: "${LAB_LOG_LEVEL:=info}"
: "${LAB_VERBOSE:=0}"

LAB_LIB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
LAB_SRC=${AXN_SRC:-$(cd -- "$LAB_LIB_DIR/../.." && pwd -P)}

# Address plan (see README.md).
LAB_LAN4=10.99.0         # node N = 10.99.0.N/24, router = .254
LAB_LAN6=fd00:99:        # node N = fd00:99::N/64, router = fd00:99::254
LAB_EXT4=10.98.0         # router external side .1, client .2
LAB_EXT6=fd00:98:
LAB_ROUTER_ID=254

# ---------------------------------------------------------------- helpers
_lab_err() { printf 'lab: %s\n' "$*" >&2; }
_lab_log() { [ "$LAB_VERBOSE" = 1 ] && printf 'lab: %s\n' "$*" >&2; return 0; }
_lab_now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; printf '%s' "$((10#$t / 1000))"; }

# Sleep without forking /usr/bin/sleep (1 ms resolution instead of ~3 ms):
# read with a timeout from a pipe nobody writes to.
# Children get it closed ({_LAB_SLEEP_FD}>&- on their command line).
_lab_sleep_init() {
	[ -n "${_LAB_SLEEP_FD:-}" ] || exec {_LAB_SLEEP_FD}<> <(:)
}
_lab_sleep() {
	_lab_sleep_init
	read -r -t "$1" -u "$_LAB_SLEEP_FD" _ || true
}

_lab_need_init() {
	if [ -z "${LAB_WORK:-}" ] || [ ! -d "$LAB_WORK" ]; then
		_lab_err "lab_init has not run"
		return 1
	fi
}

_lab_valid_node() {
	case "$1" in
	'' | *[!0-9]* | 0*) _lab_err "bad node number '$1' (1..253)"; return 1 ;;
	esac
	if [ "$1" -gt 253 ]; then _lab_err "bad node number '$1' (1..253)"; return 1; fi
}

# Run an ip batch (stdin) inside namespace $1; on error show the batch.
_lab_ipb() {
	local ns=$1 batch="" out
	IFS= read -r -d '' batch || true
	if ! out=$(ip -n "$ns" -b - <<<"$batch" 2>&1); then
		_lab_err "ip -n $ns -b failed: $out"
		printf '%s\n' "$batch" | sed 's/^/lab:   | /' >&2
		return 1
	fi
}

# Create a namespace, remember it for lab_down, set its sysctls.
_lab_ns_add() {
	local ns=$1 out
	shift
	if ! out=$(ip netns add "$ns" 2>&1); then
		_lab_err "ip netns add $ns: $out"
		return 1
	fi
	printf '%s\n' "$ns" >>"$LAB_WORK/.netns"
	# No DAD (addresses usable at once), no rp_filter (asymmetric lab routes).
	if ! out=$(nsenter --net="/run/netns/$ns" sysctl -q -w \
		net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
		net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 "$@" 2>&1); then
		_lab_err "sysctl in $ns: $out"
		return 1
	fi
}

# pid + start time, so lab_down never signals a recycled pid.
_lab_starttime() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) } # fields after "(comm) ": state is field 3
	# shellcheck disable=SC2086 # split the stat fields
	set -- $stat
	printf '%s' "${20}" # field 22 overall
}
_lab_state() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	printf '%s' "${stat%% *}"
}
# True while PID is the process we recorded (zombies count as gone).
_lab_pid_ours() {
	local pid=$1 st=$2 now state
	now=$(_lab_starttime "$pid") || return 1
	[ "$now" = "$st" ] || return 1
	state=$(_lab_state "$pid") || return 1
	[ "$state" != Z ]
}
_lab_track_pid() { # PID LABEL
	local st
	st=$(_lab_starttime "$1") || st=0
	printf '%s %s %s\n' "$1" "$st" "$2" >>"$LAB_WORK/.pids"
}
_lab_untrack_pid() {
	[ -f "$LAB_WORK/.pids" ] || return 0
	local tmp="$LAB_WORK/.pids.$$"
	awk -v p="$1" '$1 != p' "$LAB_WORK/.pids" >"$tmp" && mv "$tmp" "$LAB_WORK/.pids"
}

# Signal PID (if still ours), wait up to T seconds, SIGKILL after that.
# Sets _LAB_RC to the exit status when PID is our child, else "".
_lab_stop_pid() { # PID STARTTIME SIGNAL TIMEOUT
	local pid=$1 st=$2 sig=$3 t=$4 i n killed=0
	_LAB_RC=
	if _lab_pid_ours "$pid" "$st"; then
		kill -s "$sig" "$pid" 2>/dev/null || true
		n=$((t * 100))
		for ((i = 0; i < n; i++)); do
			_lab_pid_ours "$pid" "$st" || break
			_lab_sleep 0.01
		done
		if _lab_pid_ours "$pid" "$st"; then
			_lab_err "pid $pid did not exit ${t}s after SIG$sig; sending SIGKILL"
			kill -s KILL "$pid" 2>/dev/null || true
			killed=1
		fi
	fi
	# Reap it if it is our child (wait fails harmlessly otherwise).
	if wait "$pid" 2>/dev/null; then _LAB_RC=0; else _LAB_RC=$?; fi
	[ "$_LAB_RC" = 127 ] && _LAB_RC= # not our child
	_lab_untrack_pid "$pid" || true
	[ "$killed" = 0 ]
}

# ---------------------------------------------------------------- names
lab_ns() { # WHO: N | nN | lan | router | client | POD
	case "$1" in
	[1-9] | [1-9][0-9] | [1-9][0-9][0-9]) printf '%s-n%s' "$LAB_PREFIX" "$1" ;;
	n[1-9]*) printf '%s-%s' "$LAB_PREFIX" "$1" ;;
	lan | router | client) printf '%s-%s' "$LAB_PREFIX" "$1" ;;
	*) printf '%s-pod-%s' "$LAB_PREFIX" "$1" ;;
	esac
}
lab_dir() { printf '%s/n%s' "$LAB_WORK" "$1"; }
lab_conf_path() { printf '%s/n%s/axonemed.conf' "$LAB_WORK" "$1"; }
lab_rundir() { printf '%s/n%s/run' "$LAB_WORK" "$1"; }
lab_sock() { printf '%s/n%s/run/axonemed.sock' "$LAB_WORK" "$1"; }
lab_log() { printf '%s/n%s/agent.log' "$LAB_WORK" "$1"; }
lab_statedir() { printf '%s/n%s/state' "$LAB_WORK" "$1"; }
lab_bpffs() { printf '%s/n%s' "$LAB_BPF" "$1"; }
lab_cgroup() { printf '%s/n%s' "$LAB_CG" "$1"; }
# The same cgroup as the node's agent sees it (through the lab's cgroup2 mount).
lab_cgroup_agent() { printf '%s/n%s' "$LAB_CG_AGENT" "$1"; }
lab_node_name() { printf 'node%s' "$1"; }
lab_node_ip4() { printf '%s.%s' "$LAB_LAN4" "$1"; }
lab_node_ip6() { printf '%s:%x' "$LAB_LAN6" "$1"; }
lab_pod_cidr4() { printf '10.200.%s.0/24' "$1"; }
lab_pod_cidr6() { printf 'fd00:200:%x::/64' "$1"; }
lab_agent_pid() { cat "$LAB_WORK/n$1/agent.pid" 2>/dev/null || true; }
lab_pod_ip4() { sed -n 's/^ip4=//p' "$LAB_WORK/.pods/$1" 2>/dev/null || true; }
lab_pod_ip6() { sed -n 's/^ip6=//p' "$LAB_WORK/.pods/$1" 2>/dev/null || true; }

# Run a command inside a lab namespace: lab_exec n1 ping -c1 10.99.0.2
lab_exec() {
	local ns
	ns=$(lab_ns "$1")
	shift
	ip netns exec "$ns" "$@"
}

# ---------------------------------------------------------------- binaries
# The staged install (`make stage` -> <builddir>/stage): $AXN_STAGE, else the
# first of $AXN_BUILD/stage, <repo>/_build/stage (tools/bootstrap.sh) and
# <repo>/stage (an in-tree build) that has axonemed.
lab_find_stage() {
	local c
	for c in "${AXN_STAGE:-}" "${AXN_BUILD:+$AXN_BUILD/stage}" \
		"$LAB_SRC/_build/stage" "$LAB_SRC/stage"; do
		[ -n "$c" ] || continue
		if [ -x "$c/usr/local/sbin/axonemed" ]; then
			printf '%s' "$c"
			return 0
		fi
	done
	return 1
}
# Sets AXONEMED, AXONEME, LAB_STAGE and (unless set) LAB_MODULEDIR.
lab_find_bins() {
	if [ -z "${AXONEMED:-}" ] || [ -z "${AXONEME:-}" ] || [ -z "${LAB_MODULEDIR:-}" ]; then
		if [ -z "${LAB_STAGE:-}" ]; then
			LAB_STAGE=$(lab_find_stage) || {
				_lab_err "no staged install found (run tools/bootstrap.sh, or make stage; or set AXN_STAGE)"
				return 1
			}
		fi
		: "${AXONEMED:=$LAB_STAGE/usr/local/sbin/axonemed}"
		: "${AXONEME:=$LAB_STAGE/usr/local/bin/axoneme}"
		: "${LAB_MODULEDIR:=$LAB_STAGE/usr/local/lib/axoneme/modules}"
	fi
	[ -x "$AXONEMED" ] || { _lab_err "axonemed not executable: $AXONEMED"; return 1; }
	[ -x "$AXONEME" ] || { _lab_err "axoneme CLI not executable: $AXONEME"; return 1; }
	export AXONEMED AXONEME LAB_MODULEDIR
}

# lab_build_hello OUTDIR — build the SDK example module out of tree against
# the staged SDK only: copies sdk/examples/hello to OUTDIR/hello-src and runs
# make there with PKG_CONFIG_PATH pointing into the stage and pkg-config
# --define-prefix, so the cflags point into the stage, not the source tree.
# Sets LAB_HELLO_SO (and LAB_HELLO_CFLAGS, what pkg-config gave).
lab_build_hello() {
	local out=$1 src=$LAB_SRC/sdk/examples/hello pcdir log rc=0
	lab_find_bins || return 1
	[ -f "$src/Makefile" ] || { _lab_err "no $src/Makefile"; return 1; }
	pcdir=$LAB_STAGE/usr/local/lib/pkgconfig
	[ -f "$pcdir/axoneme-sdk.pc" ] || { _lab_err "no axoneme-sdk.pc in $pcdir"; return 1; }
	mkdir -p "$out" || return 1
	rm -rf "$out/hello-src"
	cp -R "$src" "$out/hello-src" || return 1
	# Build products that may sit in the source dir are not ours to reuse.
	(cd "$out/hello-src" && rm -f ./*.o ./*.so ./*.skel.h ./*.bpf.o) || return 1
	LAB_HELLO_CFLAGS=$(PKG_CONFIG_PATH=$pcdir pkg-config --define-prefix --cflags axoneme-sdk) || {
		_lab_err "pkg-config --define-prefix --cflags axoneme-sdk failed (PKG_CONFIG_PATH=$pcdir)"
		return 1
	}
	log=$out/hello-build.log
	PKG_CONFIG_PATH=$pcdir make -C "$out/hello-src" PKG_CONFIG="pkg-config --define-prefix" >"$log" 2>&1 || rc=$?
	if [ "$rc" != 0 ] || [ ! -f "$out/hello-src/hello.so" ]; then
		_lab_err "building hello failed (rc $rc); see $log:"
		tail -n 25 "$log" | sed 's/^/lab:   | /' >&2
		return 1
	fi
	LAB_HELLO_SO=$out/hello-src/hello.so
}

# lab_moduledir DIR SO... — a private module directory the loader accepts:
# owned by root, mode 0755, holding copies of the given modules (0644).
lab_moduledir() {
	local dir=$1 so
	shift
	mkdir -p "$dir" && chown 0:0 "$dir" && chmod 0755 "$dir" || return 1
	for so in "$@"; do
		[ -f "$so" ] || { _lab_err "no module $so"; return 1; }
		install -m 0644 -o 0 -g 0 "$so" "$dir/" || return 1
	done
}

# ---------------------------------------------------------------- lifecycle
lab_require_root() {
	if [ -n "${AXN_SKIP_LAB:-}" ]; then
		# test.sh's sanitizer pass: unit and BPF tests only, the lab ran already.
		echo "SKIP: ${0##*/}: AXN_SKIP_LAB is set"
		exit 77
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "SKIP: ${0##*/} needs root (network namespaces, bpffs, cgroups)"
		exit 77
	fi
	local t
	for t in ip nsenter mount; do
		if ! command -v "$t" >/dev/null; then
			echo "SKIP: ${0##*/} needs '$t' (run tools/deps.sh)"
			exit 77
		fi
	done
}

# lab_init PREFIX — PREFIX: [a-z0-9]{1,12}, unique on the machine (use $$).
lab_init() {
	local prefix=${1:-axl$$} cgroot
	case "$prefix" in
	'' | *[!a-z0-9]*) _lab_err "prefix must be [a-z0-9]+: '$prefix'"; return 1 ;;
	esac
	if [ "${#prefix}" -gt 12 ]; then _lab_err "prefix too long (max 12): $prefix"; return 1; fi
	if [ -n "${LAB_WORK:-}" ] && [ -d "$LAB_WORK" ]; then _lab_err "lab already initialised: $LAB_WORK"; return 1; fi
	if [ -e "/run/netns/$prefix-lan" ] || [ -e "/run/netns/$prefix-n1" ]; then
		_lab_err "namespaces with prefix $prefix already exist"
		return 1
	fi
	LAB_PREFIX=$prefix
	LAB_WORK=$(mktemp -d "/tmp/$prefix.XXXXXX") || return 1
	chmod 0755 "$LAB_WORK"
	LAB_BPF=$LAB_WORK/bpf
	export LAB_PREFIX LAB_WORK LAB_BPF
	: >"$LAB_WORK/.netns"
	: >"$LAB_WORK/.pids"
	: >"$LAB_WORK/.nodes"
	mkdir -p "$LAB_WORK/.pods"

	# One bpffs instance for the whole lab, outside /sys: `ip netns exec`
	# remounts /sys, so /sys/fs/bpf is not a bpffs inside a node.
	mkdir "$LAB_BPF" || return 1
	mount -t bpf "$prefix-bpf" "$LAB_BPF" || { _lab_err "mount -t bpf failed"; return 1; }
	: >"$LAB_WORK/.bpf-mounted"

	# cgroup v2: hybrid layout puts it at /sys/fs/cgroup/unified.
	if [ -n "${LAB_CGROUP_ROOT:-}" ]; then
		cgroot=$LAB_CGROUP_ROOT
	elif [ -e /sys/fs/cgroup/unified/cgroup.procs ]; then
		cgroot=/sys/fs/cgroup/unified
	elif [ -e /sys/fs/cgroup/cgroup.controllers ]; then
		cgroot=/sys/fs/cgroup
	else
		_lab_err "no cgroup v2 hierarchy found"
		return 1
	fi
	LAB_CG=$cgroot/$prefix
	export LAB_CG
	mkdir "$LAB_CG" || { _lab_err "mkdir $LAB_CG failed"; return 1; }
	printf '%s\n' "$LAB_CG" >"$LAB_WORK/.cgroup"
	# `ip netns exec` remounts /sys, hiding the cgroup tree from agents in a
	# node: they see the same hierarchy through a mount in the work dir.
	LAB_CG2=$LAB_WORK/cg2
	export LAB_CG2
	mkdir "$LAB_CG2" && mount -t cgroup2 "$prefix-cg2" "$LAB_CG2" ||
		{ _lab_err "mount -t cgroup2 at $LAB_CG2 failed"; return 1; }
	LAB_CG_AGENT=$LAB_CG2/$prefix
	export LAB_CG_AGENT
	_lab_log "init $prefix: work $LAB_WORK, bpffs $LAB_BPF, cgroup $LAB_CG"
}

# lab_lan — the LAN: namespace PREFIX-lan holding bridge br0 (STP off).
lab_lan() {
	_lab_need_init || return 1
	[ -e "/run/netns/$LAB_PREFIX-lan" ] && return 0
	_lab_ns_add "$LAB_PREFIX-lan" || return 1
	_lab_ipb "$LAB_PREFIX-lan" <<-EOF || return 1
		link set lo up
		link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
		link set br0 up
	EOF
	_lab_log "lan up"
}

# Routes a node needs towards node M's pods (run for every pair).
_lab_pod_routes() { # ON_NODE TO_NODE
	_lab_ipb "$(lab_ns "$1")" <<-EOF
		route replace $(lab_pod_cidr4 "$2") via $(lab_node_ip4 "$2")
		route replace $(lab_pod_cidr6 "$2") via $(lab_node_ip6 "$2")
	EOF
}

# lab_node N — namespace PREFIX-nN, eth0 on the LAN (10.99.0.N/24,
# fd00:99::N/64), forwarding on, pod CIDRs 10.200.N.0/24 + fd00:200:N::/64,
# routes to every other node's pods, per-node dirs, cgroup and conf.
lab_node() {
	local n=$1 ns m
	_lab_need_init || return 1
	_lab_valid_node "$n" || return 1
	ns=$(lab_ns "$n")
	[ -e "/run/netns/$ns" ] && { _lab_err "node $n exists"; return 1; }
	lab_lan || return 1
	_lab_ns_add "$ns" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 || return 1
	_lab_ipb "$ns" <<-EOF || return 1
		link set lo up
		link add eth0 type veth peer name n$n netns $LAB_PREFIX-lan
		addr add $(lab_node_ip4 "$n")/24 dev eth0
		addr add $(lab_node_ip6 "$n")/64 dev eth0 nodad
		link set eth0 up
	EOF
	_lab_ipb "$LAB_PREFIX-lan" <<-EOF || return 1
		link set n$n master br0
		link set n$n up
	EOF
	mkdir -p "$(lab_rundir "$n")" "$(lab_statedir "$n")" "$(lab_bpffs "$n")" || return 1
	mkdir "$(lab_cgroup "$n")" || { _lab_err "mkdir $(lab_cgroup "$n")"; return 1; }
	local -a others
	mapfile -t others <"$LAB_WORK/.nodes"
	for m in "${others[@]}"; do
		_lab_pod_routes "$n" "$m" || return 1
		_lab_pod_routes "$m" "$n" || return 1
	done
	printf '%s\n' "$n" >>"$LAB_WORK/.nodes"
	if [ -e "/run/netns/$LAB_PREFIX-router" ]; then
		_lab_router_node_routes "$n" || return 1
	fi
	lab_conf "$n" || return 1
	_lab_log "node $n up ($(lab_node_ip4 "$n"))"
}

lab_nodes() { cat "$LAB_WORK/.nodes"; }

# lab_conf N [TEXT] — write node N's conf: a generated `agent` section
# (node_name, bpffs, rundir, moduledir, cgroup, metrics, log_level) followed
# by TEXT, default: modules = ( "statedir" ) reading the node's state dir.
# TEXT "-" reads it from stdin.
lab_conf() {
	local n=$1 text=${2-} moduledir=""
	_lab_valid_node "$n" || return 1
	if [ "$text" = - ]; then
		text=$(cat)
	elif [ -z "$text" ]; then
		text=$(printf 'modules = ( "statedir" );\nstatedir: { path = "%s"; };' "$(lab_statedir "$n")")
	fi
	if [ -n "${LAB_MODULEDIR:-}" ]; then
		moduledir=$LAB_MODULEDIR
	elif lab_find_bins 2>/dev/null; then
		moduledir=$LAB_MODULEDIR
	fi
	{
		printf '# Generated by tests/lab/lab.sh for lab %s, node %s\n' "$LAB_PREFIX" "$n"
		printf 'agent: {\n'
		printf '  node_name = "%s";\n' "$(lab_node_name "$n")"
		printf '  bpffs = "%s";\n' "$(lab_bpffs "$n")"
		printf '  rundir = "%s";\n' "$(lab_rundir "$n")"
		[ -n "$moduledir" ] && printf '  moduledir = "%s";\n' "$moduledir"
		printf '  cgroup = "%s";\n' "$(lab_cgroup_agent "$n")"
		printf '  metrics = "%s";\n' "$LAB_METRICS"
		printf '  log_level = "%s";\n' "$LAB_LOG_LEVEL"
		printf '};\n'
		printf '%s\n' "$text"
	} >"$(lab_conf_path "$n")"
}

# lab_pod NODE NAME — namespace PREFIX-pod-NAME; eth0 is a veth whose other
# end is lxc-NAME in the node. The pod gets the next address of the node's
# pod CIDR (10.200.N.K/32, fd00:200:N::K/128, K from 2) and a default route
# via 10.200.N.1 / fd00:200:N::1, which the node holds on lxc-NAME.
lab_pod() {
	local n=$1 name=$2 ns nns k ip4 ip6 gw4 gw6
	_lab_need_init || return 1
	_lab_valid_node "$n" || return 1
	case "$name" in
	'' | *[!a-z0-9]* | lan | router | client | n[0-9]*) _lab_err "bad pod name '$name' ([a-z0-9]{1,11})"; return 1 ;;
	esac
	[ "${#name}" -le 11 ] || { _lab_err "pod name too long: $name"; return 1; }
	[ -e "$LAB_WORK/.pods/$name" ] && { _lab_err "pod $name exists"; return 1; }
	nns=$(lab_ns "$n")
	[ -e "/run/netns/$nns" ] || { _lab_err "no node $n"; return 1; }
	ns=$(lab_ns "$name")
	k=$(($(cat "$LAB_WORK/n$n/.podseq" 2>/dev/null || echo 1) + 1))
	[ "$k" -le 254 ] || { _lab_err "node $n: pod CIDR full"; return 1; }
	printf '%s' "$k" >"$LAB_WORK/n$n/.podseq"
	ip4=10.200.$n.$k
	ip6=$(printf 'fd00:200:%x::%x' "$n" "$k")
	gw4=10.200.$n.1
	gw6=$(printf 'fd00:200:%x::1' "$n")
	_lab_ns_add "$ns" || return 1
	_lab_ipb "$ns" <<-EOF || return 1
		link set lo up
		link add eth0 type veth peer name lxc-$name netns $nns
		addr add $ip4/32 dev eth0
		addr add $ip6/128 dev eth0 nodad
		link set eth0 up
		route add $gw4/32 dev eth0 scope link
		route add default via $gw4 dev eth0
		route add $gw6/128 dev eth0
		route add default via $gw6 dev eth0
	EOF
	_lab_ipb "$nns" <<-EOF || return 1
		addr add $gw4/32 dev lxc-$name
		addr add $gw6/128 dev lxc-$name nodad
		link set lxc-$name up
		route add $ip4/32 dev lxc-$name
		route add $ip6/128 dev lxc-$name
	EOF
	printf 'node=%s\nip4=%s\nip6=%s\nns=%s\n' "$n" "$ip4" "$ip6" "$ns" >"$LAB_WORK/.pods/$name"
	_lab_log "pod $name on node $n: $ip4 $ip6"
}

_lab_router_node_routes() { # N: node <-> router routes
	local n=$1
	_lab_ipb "$(lab_ns "$n")" <<-EOF || return 1
		route replace default via $LAB_LAN4.$LAB_ROUTER_ID
		route replace default via $LAB_LAN6:$LAB_ROUTER_ID
	EOF
	_lab_ipb "$LAB_PREFIX-router" <<-EOF || return 1
		route replace $(lab_pod_cidr4 "$n") via $(lab_node_ip4 "$n")
		route replace $(lab_pod_cidr6 "$n") via $(lab_node_ip6 "$n")
	EOF
}

# lab_router — namespace PREFIX-router on the LAN (10.99.0.254, fd00:99::254),
# forwarding, routes to every node's pods; nodes get their default route via it.
lab_router() {
	local ns=$LAB_PREFIX-router m
	_lab_need_init || return 1
	[ -e "/run/netns/$ns" ] && return 0
	lab_lan || return 1
	_lab_ns_add "$ns" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 || return 1
	_lab_ipb "$ns" <<-EOF || return 1
		link set lo up
		link add eth0 type veth peer name rtr netns $LAB_PREFIX-lan
		addr add $LAB_LAN4.$LAB_ROUTER_ID/24 dev eth0
		addr add $LAB_LAN6:$LAB_ROUTER_ID/64 dev eth0 nodad
		link set eth0 up
	EOF
	_lab_ipb "$LAB_PREFIX-lan" <<-EOF || return 1
		link set rtr master br0
		link set rtr up
	EOF
	local -a nodes
	mapfile -t nodes <"$LAB_WORK/.nodes"
	for m in "${nodes[@]}"; do
		_lab_router_node_routes "$m" || return 1
	done
	_lab_log "router up"
}

# lab_client — namespace PREFIX-client, the "outside world": 10.98.0.2/24,
# fd00:98::2/64 on a link to the router's external side eth1 (.1 / ::1),
# default route via the router. Creates the router if needed.
lab_client() {
	local ns=$LAB_PREFIX-client
	_lab_need_init || return 1
	[ -e "/run/netns/$ns" ] && return 0
	lab_router || return 1
	_lab_ns_add "$ns" || return 1
	_lab_ipb "$ns" <<-EOF || return 1
		link set lo up
		link add eth0 type veth peer name eth1 netns $LAB_PREFIX-router
		addr add $LAB_EXT4.2/24 dev eth0
		addr add $LAB_EXT6:2/64 dev eth0 nodad
		link set eth0 up
		route add default via $LAB_EXT4.1
		route add default via $LAB_EXT6:1
	EOF
	_lab_ipb "$LAB_PREFIX-router" <<-EOF || return 1
		addr add $LAB_EXT4.1/24 dev eth1
		addr add $LAB_EXT6:1/64 dev eth1 nodad
		link set eth1 up
	EOF
	_lab_log "client up"
}

# lab_spawn WHO LABEL CMD... — run CMD in the background inside namespace WHO
# (see lab_ns), output to $LAB_WORK/LABEL.log; lab_down stops it. Prints
# nothing; the pid is in $LAB_WORK/LABEL.pid and $LAB_SPAWN_PID.
lab_spawn() {
	local who=$1 label=$2 ns
	shift 2
	_lab_need_init || return 1
	ns=$(lab_ns "$who")
	_lab_sleep_init
	ip netns exec "$ns" "$@" </dev/null >>"$LAB_WORK/$label.log" 2>&1 {_LAB_SLEEP_FD}>&- &
	LAB_SPAWN_PID=$!
	printf '%s\n' "$LAB_SPAWN_PID" >"$LAB_WORK/$label.pid"
	_lab_track_pid "$LAB_SPAWN_PID" "$label"
}

# lab_stop_pid PID [SIGNAL] — stop something lab_spawn started.
lab_stop_pid() {
	local pid=$1 sig=${2:-TERM} st
	st=$(awk -v p="$pid" '$1 == p { print $2 }' "$LAB_WORK/.pids")
	[ -n "$st" ] || { _lab_err "pid $pid was not started by the lab"; return 1; }
	_lab_stop_pid "$pid" "$st" "$sig" "$LAB_STOP_TIMEOUT"
}

# ---------------------------------------------------------------- agents
_lab_agent_ready() { # N PID OFFSET -> 0 ready, 1 not yet
	local n=$1 off=$3 sock
	if [ "$LAB_READY_BY" != socket ]; then
		if tail -c +"$((off + 1))" "$(lab_log "$n")" 2>/dev/null | grep -q 'msg="\{0,1\}ready"\{0,1\}\( \|$\)'; then
			return 0
		fi
	fi
	if [ "$LAB_READY_BY" != log ]; then
		sock=$(lab_sock "$n")
		[ -S "$sock" ] && "$AXONEME" -s "$sock" status >/dev/null 2>&1 && return 0
	fi
	return 1
}

# lab_agent_start N [ARGS...] — start axonemed -c <node conf> ARGS inside
# node N's namespace; log appended to $(lab_log N). Waits (LAB_AGENT_TIMEOUT)
# until the log says msg="ready" or the socket answers `status`
# (LAB_READY_BY=log|socket|either). On failure prints the log tail, stops
# the agent and returns 1. Sets LAB_AGENT_PID and LAB_READY_WALL_MS (exec to ready).
lab_agent_start() {
	local n=$1 ns log off pid t0 now deadline
	shift
	_lab_need_init || return 1
	_lab_valid_node "$n" || return 1
	lab_find_bins || return 1
	ns=$(lab_ns "$n")
	[ -e "/run/netns/$ns" ] || { _lab_err "no node $n"; return 1; }
	pid=$(lab_agent_pid "$n")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(_lab_state "$pid")" != Z ]; then
		_lab_err "agent on node $n already runs (pid $pid)"
		return 1
	fi
	log=$(lab_log "$n")
	touch "$log"
	off=$(stat -c %s "$log")
	printf -- '--- lab: %s start: %s -c %s %s\n' "$(date -u +%FT%T.%3NZ)" "$AXONEMED" "$(lab_conf_path "$n")" "$*" >>"$log"
	off=$(stat -c %s "$log")
	t0=$(_lab_now_ms)
	_lab_sleep_init
	ip netns exec "$ns" "$AXONEMED" -c "$(lab_conf_path "$n")" "$@" </dev/null >>"$log" 2>&1 {_LAB_SLEEP_FD}>&- &
	pid=$!
	LAB_AGENT_PID=$pid
	printf '%s\n' "$pid" >"$LAB_WORK/n$n/agent.pid"
	_lab_track_pid "$pid" "agent-n$n"
	deadline=$((t0 + LAB_AGENT_TIMEOUT * 1000))
	while :; do
		if _lab_agent_ready "$n" "$pid" "$off"; then
			now=$(_lab_now_ms)
			LAB_READY_WALL_MS=$((now - t0))
			_lab_log "agent n$n ready (pid $pid, ${LAB_READY_WALL_MS} ms)"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null || [ "$(_lab_state "$pid")" = Z ]; then
			wait "$pid" 2>/dev/null && LAB_AGENT_RC=0 || LAB_AGENT_RC=$?
			_lab_err "agent on node $n exited (rc $LAB_AGENT_RC) before ready; log tail:"
			tail -n 20 "$log" | sed 's/^/lab:   | /' >&2
			_lab_untrack_pid "$pid"
			return 1
		fi
		now=$(_lab_now_ms)
		if [ "$now" -ge "$deadline" ]; then
			_lab_err "agent on node $n not ready after ${LAB_AGENT_TIMEOUT}s; log tail:"
			tail -n 20 "$log" | sed 's/^/lab:   | /' >&2
			lab_agent_stop "$n" TERM >/dev/null 2>&1 || true
			return 1
		fi
		_lab_sleep 0.002
	done
}

# lab_agent_stop N [SIGNAL] — signal node N's agent (default TERM) and wait
# for it to exit (LAB_STOP_TIMEOUT, then SIGKILL). Sets LAB_AGENT_RC to its
# exit status. Returns 0 if it exited by itself, 1 otherwise.
lab_agent_stop() {
	local n=$1 sig=${2:-TERM} pid st
	_lab_need_init || return 1
	pid=$(lab_agent_pid "$n")
	LAB_AGENT_RC=
	[ -n "$pid" ] || { _lab_err "no agent started on node $n"; return 1; }
	st=$(awk -v p="$pid" '$1 == p { print $2 }' "$LAB_WORK/.pids")
	if [ -z "$st" ]; then
		_lab_err "agent on node $n (pid $pid) is not running"
		return 1
	fi
	local rc=0
	_lab_stop_pid "$pid" "$st" "$sig" "$LAB_STOP_TIMEOUT" || rc=$?
	LAB_AGENT_RC=$_LAB_RC
	rm -f "$LAB_WORK/n$n/agent.pid"
	return "$rc"
}

# lab_agent_signal N SIGNAL — send a signal (e.g. HUP) without waiting.
lab_agent_signal() {
	local pid
	pid=$(lab_agent_pid "$1")
	[ -n "$pid" ] || { _lab_err "no agent on node $1"; return 1; }
	kill -s "$2" "$pid"
}

# lab_axoneme N ARGS... — the CLI against node N's socket.
lab_axoneme() {
	local n=$1
	shift
	lab_find_bins || return 1
	"$AXONEME" -s "$(lab_sock "$n")" "$@"
}

# lab_json N ARGS... — the CLI's JSON answer on node N.
lab_json() {
	local n=$1
	shift
	lab_axoneme "$n" -o json "$@"
}

# lab_wait_log N PATTERN [TIMEOUT_S] [FROM_BYTE] — wait until node N's log
# (from byte FROM_BYTE) matches the grep pattern.
lab_wait_log() {
	local n=$1 pat=$2 t=${3:-5} off=${4:-0} i
	for ((i = 0; i < t * 100; i++)); do
		tail -c +"$((off + 1))" "$(lab_log "$n")" 2>/dev/null | grep -q -- "$pat" && return 0
		_lab_sleep 0.01
	done
	return 1
}
lab_log_size() { stat -c %s "$(lab_log "$1")" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- teardown
# lab_down — stop what the lab started (by pid), delete its namespaces,
# unmount its bpffs, remove its cgroups and (unless LAB_KEEP=1) its work dir.
# Safe to call twice and after a partial lab_init.
lab_down() {
	local pid st label ns cg rc=0
	[ -n "${LAB_WORK:-}" ] && [ -d "$LAB_WORK" ] || return 0
	if [ -s "$LAB_WORK/.pids" ]; then
		# TERM everything first, then wait for each (agents get the time to exit cleanly).
		while read -r pid st label; do
			if _lab_pid_ours "$pid" "$st"; then kill -s TERM "$pid" 2>/dev/null || true; fi
		done <"$LAB_WORK/.pids"
		while read -r pid st label; do
			_lab_stop_pid "$pid" "$st" TERM 5 || rc=1
		done < <(cat "$LAB_WORK/.pids")
	fi
	if [ -s "$LAB_WORK/.netns" ]; then
		# Reverse order: pods and peers first, the LAN last.
		for ns in $(tac "$LAB_WORK/.netns"); do
			[ -e "/run/netns/$ns" ] || continue
			ip netns del "$ns" 2>/dev/null || { _lab_err "ip netns del $ns failed"; rc=1; }
		done
		: >"$LAB_WORK/.netns"
	fi
	if [ -n "${LAB_CG2:-}" ] && mountpoint -q "$LAB_CG2" 2>/dev/null; then
		umount "$LAB_CG2" 2>/dev/null || umount -l "$LAB_CG2" || { _lab_err "umount $LAB_CG2 failed"; rc=1; }
	fi
	if [ -e "$LAB_WORK/.bpf-mounted" ]; then
		if mountpoint -q "$LAB_BPF"; then
			umount "$LAB_BPF" 2>/dev/null || umount -l "$LAB_BPF" || { _lab_err "umount $LAB_BPF failed"; rc=1; }
		fi
		rm -f "$LAB_WORK/.bpf-mounted"
	fi
	if [ -s "$LAB_WORK/.cgroup" ]; then
		cg=$(cat "$LAB_WORK/.cgroup")
		case "$cg" in
		/sys/fs/cgroup/*/"$LAB_PREFIX" | /sys/fs/cgroup/"$LAB_PREFIX" | "${LAB_CGROUP_ROOT:-/nonexistent}/$LAB_PREFIX")
			if [ -d "$cg" ]; then
				# Children first; rmdir only (a cgroup with processes stays, and we say so).
				find "$cg" -depth -mindepth 1 -type d -exec rmdir {} + 2>/dev/null || true
				rmdir "$cg" 2>/dev/null || { _lab_err "cannot remove cgroup $cg (processes left?)"; rc=1; }
			fi
			;;
		esac
		: >"$LAB_WORK/.cgroup"
	fi
	if [ "${LAB_KEEP:-0}" = 1 ]; then
		echo "lab: kept work dir $LAB_WORK" >&2
	elif mountpoint -q "$LAB_BPF" 2>/dev/null; then
		_lab_err "bpffs still mounted at $LAB_BPF; leaving $LAB_WORK"
		rc=1
	else
		rm -rf --one-file-system "$LAB_WORK"
	fi
	_lab_log "down"
	return "$rc"
}

# lab_on_exit CMD — run CMD (a string, eval'd) at exit before lab_down;
# $LAB_EXIT_RC holds the exit status then.
lab_on_exit() { _LAB_EXIT_HOOKS+=("$1"); }
_LAB_EXIT_HOOKS=()

_lab_exit_trap() {
	local rc=$? h
	trap - EXIT INT TERM ERR
	LAB_EXIT_RC=$rc # for the hooks
	for h in "${_LAB_EXIT_HOOKS[@]}"; do
		eval "$h" || true
	done
	lab_down || true
	exit "$rc"
}

# Under `set -e` a failing command ends the script without a word; say which.
_lab_err_trap() {
	local rc=$?
	[ -z "${_LAB_ERR_SHOWN:-}" ] || return 0
	_LAB_ERR_SHOWN=1
	local cmd=": $BASH_COMMAND"
	case "$BASH_COMMAND" in return*) cmd="" ;; esac
	_lab_err "command failed (status $rc) at ${BASH_SOURCE[1]:-?}:${BASH_LINENO[0]:-?}$cmd"
}

# lab_cleanup_trap — tear the lab down on any exit, failure and ^C included.
# Also turns on errtrace so an unexpected failure is reported with file:line.
lab_cleanup_trap() {
	set -o errtrace
	trap _lab_err_trap ERR
	trap _lab_exit_trap EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
