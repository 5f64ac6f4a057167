# ha.sh: the dev cloud's HA routers (devcloud.sh up --ha), sourced by devcloud.sh.
# Test infrastructure, not product code: docs/ha-routers-research.md says why each
# piece is as it is.
#
# Two "network nodes", a and b. Each is a network namespace the dev cloud makes
# (hikkoshi-l3a, hikkoshi-l3b) and a persistent mount namespace of its own, whose
# /run/netns is a private tmpfs (the two L3 agents both make qrouter-<id> and each
# deletes the qrouter- namespaces it does not host) and whose /sys is the node's.
# Each node runs a real neutron-linuxbridge-agent and a real neutron-l3-agent (Zed)
# under its own host name (hikkoshi-l3-a, hikkoshi-l3-b); the L3 agents run
# keepalived for HA routers as they do anywhere. The HA networks are VXLAN: the
# linuxbridge agents carry them over a veth "wire" between the nodes (192.0.2.1/30
# and .2, TEST-NET-1, inside the nodes only). RabbitMQ reaches the agents through
# relay.py (127.0.0.1:5672 inside each node, to the host's 127.0.0.1:5672). Nothing
# of it is in the host's network namespace.

HA_NODES=(a b)
ha_enabled() { [[ -f "$S/ha.enabled" ]]; }
ha_ns() { echo "hikkoshi-l3$1"; }
ha_host() { echo "hikkoshi-l3-$1"; }
ha_mnt() { echo "$S/run/ha/mnt-$1"; }
ha_ip() { if [[ $1 == a ]]; then echo 192.0.2.1; else echo 192.0.2.2; fi; }

# ha_in NODE CMD...: CMD inside the node's network and mount namespaces (nsenter
# execs it: a PID file of ha_in's PID is CMD's).
ha_in() {
  local n=$1
  shift
  nsenter --mount="$(ha_mnt "$n")" --net="/run/netns/$(ha_ns "$n")" "$@"
}

ha_services=(ha-rabbit-relay neutron-lb-agent-a neutron-lb-agent-b neutron-l3-agent-a neutron-l3-agent-b)

# ha_server_conf prints neutron-server's additions for HA routers.
ha_server_conf() {
  cat <<EOF
[DEFAULT]
max_l3_agents_per_router = 2
[experimental]
linuxbridge = true
EOF
}

ha_configure() {
  local n
  for n in "${HA_NODES[@]}"; do
    local d="$S/etc/neutron-l3-$n"
    mkdir -p "$d" "$S/lib/neutron-l3-$n" "$S/lock/l3-$n"
    cat >"$d/neutron.conf" <<EOF
[DEFAULT]
host = $(ha_host "$n")
state_path = $S/lib/neutron-l3-$n
transport_url = $(transport_url "")
[agent]
root_helper = env
[oslo_concurrency]
lock_path = $S/lock/l3-$n
EOF
    cat >"$d/l3_agent.ini" <<EOF
[DEFAULT]
interface_driver = linuxbridge
agent_mode = legacy
enable_metadata_proxy = false
EOF
    cat >"$d/linuxbridge_agent.ini" <<EOF
[linux_bridge]
physical_interface_mappings =
[vxlan]
enable_vxlan = true
local_ip = $(ha_ip "$n")
l2_population = false
[securitygroup]
firewall_driver = noop
enable_security_group = false
EOF
  done
}

# ha_nodes_up makes the nodes, their wire and their mount namespaces (idempotent).
ha_nodes_up() {
  mkdir -p "$S/run/ha"
  if ! findmnt -rn --target "$S/run/ha" -o TARGET | grep -qx "$S/run/ha"; then
    mount --bind "$S/run/ha" "$S/run/ha"
    mount --make-private "$S/run/ha"
  fi
  local n ns
  for n in "${HA_NODES[@]}"; do
    ns=$(ha_ns "$n")
    [[ -e "/run/netns/$ns" ]] || ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  if ! ip -n "$(ha_ns a)" link show hkwire-a >/dev/null 2>&1; then
    ip link add hkwire-a netns "$(ha_ns a)" type veth peer name hkwire-b netns "$(ha_ns b)"
  fi
  for n in "${HA_NODES[@]}"; do
    ns=$(ha_ns "$n")
    ip -n "$ns" addr replace "$(ha_ip "$n")/30" dev "hkwire-$n"
    ip -n "$ns" link set "hkwire-$n" up
    local m
    m=$(ha_mnt "$n")
    if ! findmnt -rn -o TARGET | grep -qx "$m"; then
      touch "$m"
      unshare --mount="$m" --propagation private nsenter --net="/run/netns/$ns" \
        sh -c "mount -t sysfs sysfs /sys && mount -t tmpfs -o mode=755 l3-$n /run/netns"
    fi
  done
}

# ha_agents_alive BINARY: both nodes' agents of BINARY are alive in Neutron.
ha_agents_alive() {
  local got
  got=$(OS_CLIENT_CONFIG_FILE="$S/clouds.yaml" /usr/bin/openstack --os-cloud admin network agent list \
    --agent-type "$1" -f value -c Host -c Alive 2>/dev/null | awk '$2 == "True" { print $1 }' | sort | tr '\n' ' ')
  [[ "$got" == "$(ha_host a) $(ha_host b) " ]]
}

ha_wait_agents() {
  local type=$1 t0=$SECONDS n
  until ha_agents_alive "$type"; do
    for n in "${HA_NODES[@]}"; do
      running "neutron-$2-agent-$n" || { tail -30 "$S/log/neutron-$2-agent-$n.log" >&2; die "neutron-$2-agent-$n exited (log: $S/log/neutron-$2-agent-$n.log)"; }
    done
    ((SECONDS - t0 < 120)) || die "the $type agents are not both alive after 120s (logs: $S/log/neutron-$2-agent-*.log)"
    sleep 2
  done
}

# ha_up starts the relay and the agents: the linuxbridge agents first, so that an
# HA port is bound by the linuxbridge driver (DOWN until wired), not the fake one.
ha_up() {
  ha_nodes_up
  local n
  start ha-rabbit-relay "$PY" "$here/ha/relay.py" --port 5672 "$(ha_ns a)" "$(ha_ns b)"
  for n in "${HA_NODES[@]}"; do
    start "neutron-lb-agent-$n" nsenter --mount="$(ha_mnt "$n")" --net="/run/netns/$(ha_ns "$n")" \
      /usr/bin/neutron-linuxbridge-agent --config-file "$S/etc/neutron-l3-$n/neutron.conf" \
      --config-file "$S/etc/neutron-l3-$n/linuxbridge_agent.ini"
  done
  ha_wait_agents linux-bridge lb
  for n in "${HA_NODES[@]}"; do
    start "neutron-l3-agent-$n" nsenter --mount="$(ha_mnt "$n")" --net="/run/netns/$(ha_ns "$n")" \
      /usr/bin/neutron-l3-agent --config-file "$S/etc/neutron-l3-$n/neutron.conf" \
      --config-file "$S/etc/neutron-l3-$n/l3_agent.ini"
  done
  ha_wait_agents l3 l3
}

# ha_down stops what the agents left behind them (keepalived and the state-change
# monitors are daemons of their own sessions, in the routers' qrouter- namespaces,
# and ip netns exec gives them mount namespaces of their own): every process in a
# qrouter- namespace of a node, in the node's network namespace or in its mount
# namespace; then the mount namespaces (their qrouter- namespaces with them) and the
# nodes.
ha_down() {
  local n m ino p
  for n in "${HA_NODES[@]}"; do
    m=$(ha_mnt "$n")
    local pids=()
    if [[ -e "$m" ]] && findmnt -rn -o TARGET | grep -qx "$m"; then
      # shellcheck disable=SC2016
      pids+=($(ha_in "$n" sh -c 'for ns in $(ip netns list | cut -d" " -f1); do ip netns pids "$ns"; done' 2>/dev/null || true))
      ino=$(stat -L -c %i "$m")
      for p in /proc/[0-9]*; do
        [[ "$(readlink "$p/ns/mnt" 2>/dev/null)" == "mnt:[$ino]" ]] && pids+=("${p#/proc/}")
      done
    fi
    if [[ -e "/run/netns/$(ha_ns "$n")" ]]; then
      pids+=($(ip netns pids "$(ha_ns "$n")" 2>/dev/null || true))
    fi
    ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null || true
    if [[ -e "$m" ]]; then
      if findmnt -rn -o TARGET | grep -qx "$m"; then umount "$m" || true; fi
      rm -f "$m"
    fi
    ip netns del "$(ha_ns "$n")" 2>/dev/null || true
  done
  if findmnt -rn -o TARGET | grep -qx "$S/run/ha"; then umount "$S/run/ha" || true; fi
}
