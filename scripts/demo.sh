#!/usr/bin/env bash
# demo.sh is Hikkoshi's main job, a whole migration in the dev cloud with nothing done
# by hand (step by step in docs/demo.md): it installs its tools, brings up the dev
# cloud (two real OpenStack clouds on 127.0.0.1, tilt/devcloud) with its data plane,
# boots a small estate in the old cloud (web and API servers on VLAN ports, databases,
# one on the qemu-TCG compute), builds the web role's load balancer with hikkoshi-lb
# and the API role's through the lbaas service, makes a development PKI and starts the
# four services on mutual TLS, registers and syncs the estate (and a physical database
# host with its disk), plans the waves, joins the networks with netbridge, moves wave 1
# with the wave runner while a traffic meter runs through both load balancers (0
# failed requests, printed by address), moves wave 2 — a database and the physical
# host (P2V) keeping their addresses, after the operator's go, their downtime printed —
# boots the physical host's image under qemu to check it kept its SSH host keys, puts
# the dev cloud back as it was, shows refusals and a kill -9 with nothing lost, and
# ends with a secret sweep of every log, etcd value and metric.
#   scripts/demo.sh            (state in .cache/demo, removed at the start)
# A dev cloud the demo started is stopped at the end (its state and the estate are
# kept for the next run); HIKKOSHI_DEMO_KEEP_DEVCLOUD=1 leaves it running.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(scripts/tools.sh):$PATH"
export PATH

state=.cache/demo
addr=127.0.0.1:7401
svc=hikkoshi.inventory.v1.InventoryService
rm -rf "$state" && mkdir -p "$state" bin
# The services speak mutual TLS: a development CA, a certificate per service and per
# role (viewer, operator, admin, collector), and the authorization policy.
pki="$state/pki"
go build -o bin/hikkoshi-pki ./platform/cmd/hikkoshi-pki
bin/hikkoshi-pki "$pki" >/dev/null
bin/hikkoshi-pki "$pki" p2v-agent >/dev/null # the P2V agent's serving certificate
# Sentinel secrets the sweep at the end looks for: etcd's root password (the embedded
# etcd turns auth on with it; every service reads it from the environment) and the P2V
# agent's bearer token.
export HIKKOSHI_ETCD_USERNAME=root HIKKOSHI_ETCD_PASSWORD="sentinel-etcd-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
(umask 077 && echo "sentinel-agent-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')" >"$state/p2v-agent-token")
tlsflags() { echo --tls-cert "$pki/$1.pem" --tls-key "$pki/$1-key.pem" --tls-ca "$pki/ca.pem" --authz-policy "$pki/policy.yaml"; }
# gc is grpcurl over mutual TLS as $WHO (default admin: the demo does everything).
gc() { local who=${WHO:-admin}; grpcurl -cacert "$pki/ca.pem" -cert "$pki/$who.pem" -key "$pki/$who-key.pem" "$@"; }
export HIKKOSHI_TLS_CERT="$pki/admin.pem" HIKKOSHI_TLS_KEY="$pki/admin-key.pem" HIKKOSHI_TLS_CA="$pki/ca.pem" # hikkoshi's
pid=""
agentpid=""
lbpid=""
cvpid=""
nbpid=""
watcher=""
devcloud_started=0
bridge_applied=0
cleanup() {
  [[ -n "$watcher" ]] && kill "$watcher" 2>/dev/null || true
  if ((bridge_applied)) && [[ -n "$nbpid" ]]; then
    # A run stopped in the netbridge step: put the address and the networks back.
    echo "rolling the bridge back (the run stopped before its rollback): the moves undone first"
    bin/hikkoshi-devcloud undo-moves >/dev/null 2>&1 || true
    for ip in 10.101.0.40 10.101.0.41 10.101.0.42; do
      hk address move-back "$bridge" "$ip" >/dev/null 2>&1 || true
    done
    hk bridge rollback "$bridge" >/dev/null 2>&1 || true
  fi
  [[ -n "$agentpid" ]] && kill -TERM "$agentpid" 2>/dev/null && wait "$agentpid" 2>/dev/null || true
  [[ -n "$lbpid" ]] && kill -TERM "$lbpid" 2>/dev/null && wait "$lbpid" 2>/dev/null || true
  [[ -n "$cvpid" ]] && kill -TERM "$cvpid" 2>/dev/null && wait "$cvpid" 2>/dev/null || true
  [[ -n "$nbpid" ]] && kill -TERM "$nbpid" 2>/dev/null && wait "$nbpid" 2>/dev/null || true
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  if ((devcloud_started)) && [[ "${HIKKOSHI_DEMO_KEEP_DEVCLOUD:-0}" != 1 ]]; then
    echo "stopping the dev cloud this demo started (HIKKOSHI_DEMO_KEEP_DEVCLOUD=1 keeps it)"
    tilt/devcloud/devcloud.sh down >/dev/null || true
  fi
}
trap cleanup EXIT

say() { printf '\n\033[1m▶ %s\033[0m\n' "$*"; }
inv() { gc -d "$2" "$addr" "$svc/$1"; }
# refused runs a call that must fail and prints the service's message.
refused() {
  if out=$(inv "$1" "$2" 2>&1); then echo "    unexpectedly accepted: $out" >&2; exit 1; fi
  sed -n 's/^ *Code: /    code: /p; s/^ *Message: /    /p' <<<"$out"
}
# brief prints one line per workload in a grpcurl JSON answer.
brief() {
  /usr/bin/python3 -c '
import json, sys
doc = json.load(sys.stdin)
ws = doc.get("workloads") or ([doc["workload"]] if "workload" in doc else [])
for w in ws:
    print("  %-18s %-10s %-12s wave=%-2s %-9s etag=%s %s" % (w["name"], w.get("kind", "").replace("WORKLOAD_KIND_", "").lower(),
          w.get("state", "").replace("WORKLOAD_STATE_", "").lower(), w.get("wave", 0), w.get("role", "-"),
          w.get("etag"), ("(" + w["stateReason"] + ")") if w.get("stateReason") else ""))'
}
start_inventory() {
  bin/inventory --listen "$addr" --etcd-embed "$state/etcd" \
    --etcd-embed-client-url http://127.0.0.1:2479 --etcd-embed-peer-url http://127.0.0.1:2480 \
    --instance demo --log-format text $(tlsflags inventory) \
    --source-clouds old --destination-clouds new --clouds-yaml tilt/.state/devcloud/clouds.yaml \
    --console-listen 127.0.0.1:7480 >>"$state/inventory.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    if gc "$addr" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$state/inventory.log"; echo "inventory exited" >&2; exit 1; }
    sleep 0.5
  done
  echo "inventory did not become SERVING; log: $state/inventory.log" >&2
  exit 1
}

lbaddr=127.0.0.1:7404
lbsvc=hikkoshi.lbaas.v1.LoadBalancerService
lbs() { gc -d "$2" "$lbaddr" "$lbsvc/$1"; }
# lbbrief prints load balancers (a grpcurl answer, a list, or a stream of watch
# messages) in a few lines each.
lbbrief() {
  /usr/bin/python3 -c '
import json, sys
text = sys.stdin.read()
dec = json.JSONDecoder(); i = 0
while True:
    j = text.find("{", i)
    if j < 0: break
    try:
        doc, i = dec.raw_decode(text, j)
    except ValueError:
        i = j + 1; continue
    lbs = doc.get("loadBalancers") or ([doc["loadBalancer"]] if "loadBalancer" in doc else [])
    for lb in lbs:
        st = lb.get("status", {})
        extra = (" settled" if doc.get("settled") else "") + (" deleted" if doc.get("deleted") else "")
        print("  %s %-8s %s%s%s" % (lb["name"], lb.get("displayName", ""), st.get("provisioningStatus"), extra,
              (" (built " + lb["createMode"] + ")") if lb.get("createMode") else ""))
        for l in lb.get("listeners", []):
            p = l.get("pool", {})
            ms = ", ".join("%s:%s w=%s %s" % (m["address"], m["port"], m.get("weight", 0), m["status"]["provisioningStatus"]) for m in p.get("members", []))
            print("    %s:%s → %s pool %s [%s] monitor %s" % (l["protocol"], l["port"], p.get("protocol"), p.get("status", {}).get("provisioningStatus"),
                  ms, p.get("healthMonitor", {}).get("type", "none")))'
}
start_lbaas() {
  bin/lbaas --listen "$lbaddr" --etcd-endpoints http://127.0.0.1:2479 --instance demo --log-format text $(tlsflags lbaas) \
    --cloud old --clouds-yaml tilt/.state/devcloud/clouds.yaml >>"$state/lbaas.log" 2>&1 &
  lbpid=$!
  for _ in $(seq 1 120); do
    if gc "$lbaddr" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then return 0; fi
    kill -0 "$lbpid" 2>/dev/null || { cat "$state/lbaas.log"; echo "lbaas exited" >&2; exit 1; }
    sleep 0.5
  done
  echo "lbaas did not become SERVING; log: $state/lbaas.log" >&2
  exit 1
}

say "dev cloud: two OpenStack clouds (Zed, Debian's packages) on 127.0.0.1 — tilt/devcloud/devcloud.sh up --libvirt"
curl -s -o /dev/null --max-time 2 http://127.0.0.1:5000/v3 || devcloud_started=1
if ! tilt/devcloud/devcloud.sh up --libvirt >"$state/devcloud-up.log" 2>&1; then
  tail -20 "$state/devcloud-up.log" >&2
  echo "the dev cloud did not come up: $state/devcloud-up.log" >&2
  exit 1
fi
sed -n 's/^\[devcloud [0-9:]*\] //p; /^  [a-z]/p' "$state/devcloud-up.log" | grep -v '^phase: ' | sed 's/^/  /'
go build -o bin/hikkoshi-devcloud ./tilt/devcloud/cmd/hikkoshi-devcloud

say "what each cloud holds, seen through gophercloud and tilt/.state/devcloud/clouds.yaml"
bin/hikkoshi-devcloud tour

# A run stopped half-way leaves moved servers: their replacements go, their old servers start again.
bin/hikkoshi-devcloud undo-moves | sed 's/^/  (a previous run: /; s/$/)/'
for _ in $(seq 1 240); do
  [[ -z "$(OS_CLIENT_CONFIG_FILE=tilt/.state/devcloud/clouds.yaml /usr/bin/openstack --os-cloud old server list --status SHUTOFF -f value -c Name | grep -E '^(web|api|db|files)-[0-9]+$')" ]] && break
  sleep 0.5
done

say "the estate in the old cloud: web and API servers on VLAN ports, databases (one on the qemu-TCG compute, one with a Cinder data volume), a file server booted from a volume"
bin/hikkoshi-devcloud estate >"$state/estate.json"
/usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    vols = ""
    if m.get("data_volume_type"): vols = "  + 1 GiB %s data volume %s" % (m["data_volume_type"], m["volumes"][0])
    if m.get("boot_volume_type"): vols = "  boots from 1 GiB %s volume %s" % (m["boot_volume_type"], m["volumes"][0])
    print("  %-7s %-5s %-36s %-7s zone %-4s %s%s" % (m["name"], m["role"], m["server_id"], m["status"], m["zone"], m.get("ip", "(no port)"), vols))
' "$state/estate.json"

say "load balancing on Octavia with the PROXY protocol: hikkoshi-lb, straight against the Octavia API"
go build -o bin/hikkoshi-lb ./services/lbaas/cmd/hikkoshi-lb
lbcli() { OS_CLIENT_CONFIG_FILE=tilt/.state/devcloud/clouds.yaml bin/hikkoshi-lb --os-cloud old "$@"; }
lbcli api-version | sed 's/^/  /'
lbcli delete shop-web --wait >/dev/null 2>&1 || true # a previous run's
echo "  one command: load balancer, TCP:80 listener, PROXYV2 pool, web-1 and web-2, a TCP health monitor"
lbcli create shop-web --vip-subnet old-vlan-101-v4 --listener TCP:80 --pool-protocol PROXYV2 \
  --member 10.101.0.21:8080 --member 10.101.0.22:8080 --monitor TCP --wait --count-calls 2>&1 | sed 's/^/  /'
echo "  a UDP listener with a PROXY pool is refused before any API call:"
if out=$(lbcli create shop-dns --vip-subnet old-vlan-101-v4 --listener UDP:53 --pool-protocol PROXY --member 10.101.0.21:53 2>&1); then
  echo "    unexpectedly accepted" >&2; exit 1
fi
echo "    $out"

say "the data plane: shop-web forwards for real (haproxy on its VIP, rendered by Octavia's amphora templates) to web-1 and web-2's stand-ins"
echo "  the traffic meter, 5 s at 20 requests/s through shop-web's VIP, from inside the data plane's namespace:"
bin/hikkoshi-devcloud traffic --lb shop-web --rate 20 --for 5s | sed 's/^/    /'
echo "  drain web-1 (weight 0: no new connections, the open ones stay) while the meter runs at 50/s:"
bin/hikkoshi-devcloud traffic --lb shop-web --rate 50 --for 0 -o json >"$state/drain-meter.json" &
meter=$!
sleep 2
lbcli member drain shop-web 10.101.0.21:8080 2>&1 | grep -E 'weight|member ' | sed -n 1,3p | sed 's/^/  /'
drained=$(date +%s%3N)
sleep 3
kill -TERM "$meter"; wait "$meter" || true
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); drained = int(sys.argv[2])
print("    sent %d, answered %d, failed %d %s" % (r["sent"], r["answered"], r["failed"], r["failures"] or ""))
for n, s in sorted(r["servers"].items()):
    d = (s["last_sent_unix_ms"] - drained) / 1000
    print("    %-6s %4d answers, the last to a request sent %.1f s %s the drain was ACTIVE" % (n, s["count"], abs(d), "before" if d < 0 else "after"))
print("    PROXY v2 headers naming the meter'"'"'s own address and port: %d of %d" % (r["proxy_client_matched"], r["answered"]))
' "$state/drain-meter.json" "$drained"
echo "  what Octavia now reports for the members (its health, fed from haproxy as an amphora's heartbeat would):"
lbcli show shop-web 2>/dev/null | grep -iE 'member|operating' | sed 's/^/  /' || true

say "build and start the inventory (embedded etcd in $state/etcd)"
go build -o bin/inventory ./services/inventory/cmd/inventory
start_inventory
echo "  pid $pid, gRPC $addr, metrics https://127.0.0.1:7411/metrics (mutual TLS too)"
echo "  the migration's live web console (read-only, loopback only): http://127.0.0.1:7480/ — open it and watch the run"

say "the old project's own haproxy: hikkoshi-lb import maps its haproxy.cfg onto Octavia, line by line, from the file alone"
echo "  tilt/devcloud/estate/shop-haproxy.cfg (a host-switched backend, send-proxy servers, a cookie, a deny, process settings):"
set +e
bin/hikkoshi-lb import tilt/devcloud/estate/shop-haproxy.cfg --name shop-imported 2>/dev/null | sed 's/^/  /'
rc=${PIPESTATUS[0]}
set -e
echo "  (exit $rc: 3 while lines are left over; --accept-leftovers applies without them)"
lbcli delete shop-imported --wait >/dev/null 2>&1 || true # a previous run's
lbcli import tilt/devcloud/estate/shop-haproxy.cfg --name shop-imported --apply --accept-leftovers --vip-subnet old-vlan-101-v4 2>&1 >/dev/null | grep '^load balancer' | sed 's/^/  /' 
echo "  applied; requests through its VIP 10.101.0.147 on the data plane (by the jump host), by Host header:"
for h in www.example www.example api.example; do
  printf '    Host %-12s → %s\n' "$h" "$(curl -s -m 5 --socks5 127.0.0.1:1080 -H "Host: $h" http://10.101.0.147/ | /usr/bin/python3 -c 'import json,sys; a=json.load(sys.stdin); print("%s (PROXY header: %s)" % (a["server"], a["proxy"]))')"
done
lbcli delete shop-imported --wait >/dev/null 2>&1

say "the lbaas service: the API role's load balancer through gRPC (etcd: the inventory's)"
go build -o bin/lbaas ./services/lbaas/cmd/lbaas
start_lbaas
echo "  pid $lbpid, gRPC $lbaddr, metrics https://127.0.0.1:7414/metrics"
gc "$lbaddr" list | grep hikkoshi | sed 's/^/  /'
subnet=$(bin/hikkoshi-devcloud subnet-id)
for old in $(lbs ListLoadBalancers '{"tags":["demo-api"]}' | /usr/bin/python3 -c 'import json,sys; [print(l["name"]) for l in json.load(sys.stdin).get("loadBalancers", [])]'); do
  lbs DeleteLoadBalancer "{\"name\":\"$old\"}" >/dev/null # a previous run's
done
api_lb='{"request_id":"demo-shop-api","load_balancer":{"display_name":"shop-api","tags":["demo-api"],"vip":{"subnet_id":"'"$subnet"'"},
  "listeners":[{"protocol":"TCP","port":8080,"pool":{"display_name":"shop-api-pool","protocol":"PROXY",
  "members":[{"display_name":"api-1","address":"10.101.0.31","port":8080}],
  "health_monitor":{"type":"TCP","delay_seconds":5,"timeout_seconds":3,"max_retries":3}}}]}}'
echo "  CreateLoadBalancer: TCP:8080 → PROXY pool with api-1 and a TCP monitor, request_id demo-shop-api"
lbs CreateLoadBalancer "$api_lb" | tee "$state/api-lb.json" | lbbrief
api_name=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["loadBalancer"]["name"])' "$state/api-lb.json")
echo "  the same request again (same request_id): the same load balancer, nothing new built"
lbs CreateLoadBalancer "$api_lb" | lbbrief | sed -n 1p
echo "  a UDP listener with a PROXY pool, refused before any call to Octavia:"
if out=$(lbs CreateLoadBalancer '{"load_balancer":{"vip":{"subnet_id":"'"$subnet"'"},"listeners":[{"protocol":"UDP","port":53,"pool":{"display_name":"dns","protocol":"PROXY"}}]}}' 2>&1); then
  echo "    unexpectedly accepted" >&2; exit 1
fi
sed -n 's/^ *Code: /    code: /p; s/^ *Message: /    /p' <<<"$out"
echo "  WatchLoadBalancer {wait_for_change} in the background, then one UpdateLoadBalancer:"
echo "  add api-2 (10.101.0.32), drain api-1 — each step waits for ACTIVE, under the load balancer's etcd lock"
gc -d "{\"name\":\"$api_name\",\"wait_for_change\":true}" "$lbaddr" "$lbsvc/WatchLoadBalancer" >"$state/lbwatch.json" 2>&1 &
lbwatcher=$!
sleep 1
lbs UpdateLoadBalancer "{\"name\":\"$api_name\",\"member_changes\":[
  {\"add\":{\"display_name\":\"api-2\",\"address\":\"10.101.0.32\",\"port\":8080}},
  {\"drain\":{\"address\":\"10.101.0.31\",\"port\":8080}}]}" >"$state/api-update.json"
/usr/bin/python3 -c 'import json,sys; [print("   ", r) for r in json.load(open(sys.argv[1]))["results"]]' "$state/api-update.json"
wait "$lbwatcher" || true
echo "  what the watch streamed, until the update was over:"
lbbrief <"$state/lbwatch.json" | sed 's/^/  /'
echo "  after it:"
lbs GetLoadBalancer "{\"name\":\"$api_name\"}" | lbbrief
echo "  Octavia API calls this service made, by route (hikkoshi_lbaas_octavia_requests_total):"
curl -s --cacert "$pki/ca.pem" --cert "$pki/admin.pem" --key "$pki/admin-key.pem" https://127.0.0.1:7414/metrics | /usr/bin/python3 -c '
import re, sys, collections
n = collections.Counter()
for line in sys.stdin:
    m = re.match(r"hikkoshi_lbaas_octavia_requests_total\{(.*)\} (\S+)$", line)
    if m:
        labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(1)))
        n["%s %s → %s" % (labels["method"], labels["route"], labels["code"])] += int(float(m.group(2)))
for k, v in n.most_common(10):
    print("    %4d  %s" % (v, k))'

say "grpcurl $addr list (mutual TLS: every service has its certificate, every client its own; a policy gives each identity its role)"
gc "$addr" list | sed 's/^/  /'
echo "  - without a client certificate the handshake is refused:"
grpcurl -cacert "$pki/ca.pem" "$addr" list 2>&1 | sed 's/^/    /' | cut -c1-150 | head -2 || true
echo "  - the viewer reads, but may not change anything (PERMISSION_DENIED, naming the role needed):"
WHO=viewer gc -d '{}' "$addr" "$svc/ListWorkloads" >/dev/null && echo "    ListWorkloads as viewer: OK"
if out=$(WHO=viewer gc -d '{"workload_id":"nope","workload":{"physical":{"hostname":"nope"}}}' "$addr" "$svc/CreateWorkload" 2>&1); then echo "    unexpectedly accepted" >&2; exit 1; fi
sed -n 's/^ *Code: /    code: /p; s/^ *Message: /    /p' <<<"$out"
echo "  - and each call that changes something is audited (the inventory's log):"
grep 'msg=audit' "$state/inventory.log" | tail -1 | sed 's/^/    /' | cut -c1-200

say "follow every change: WatchWorkloads {include_existing: true} in the background"
gc -d '{"include_existing": true}' "$addr" "$svc/WatchWorkloads" >"$state/watch.json" 2>&1 &
watcher=$!

say "register the estate: its six servers (by their real server IDs) and a physical DB host"
disk=$(tilt/p2v/fixture.sh) # the physical host's disk: built once per machine (~6 min, with its twins), then cached
echo "  the physical DB host pg-legacy-1 (10.101.0.40): its disk as the converter reads it, $disk"
specs=()
while read -r line; do
  specs+=("$(/usr/bin/python3 -c '
import json, sys
m = json.loads(sys.argv[1])
src = {"instance": {"cloud": "old", "region": "RegionOld", "projectId": m["project_id"], "serverId": m["server_id"]}}
print("%s|%s|%s|%s" % (m["name"], m["role"], "true" if m["role"] in ("db", "files") else "false", json.dumps(src)))' "$line")")
done <"$state/estate.json"
specs+=("db-phys|db|true|{\"displayName\":\"db-phys\",\"physical\":{\"hostname\":\"pg-legacy-1\",\"addresses\":[\"10.101.0.40\"],\"osRelease\":\"Debian GNU/Linux 12\",\"flavor\":\"m1.small\",\"p2v\":{\"diskPath\":\"$disk\",\"nics\":[\"eno1=52:54:00:12:34:56\"],\"keyPairUser\":\"ops\"}}}")
first=""
for spec in "${specs[@]}"; do
  IFS='|' read -r id role stateful src <<<"$spec"
  body=$(printf '{"workload_id":"%s","request_id":"demo-%s","workload":{"role":"%s","stateful":%s,%s}}' \
    "$id" "$id" "$role" "$stateful" "${src:1:${#src}-2}")
  [[ -n "$first" ]] || first=$body
  inv CreateWorkload "$body" | brief
done
echo "  the same CreateWorkload again (same request_id) returns the same workload, no duplicate:"
inv CreateWorkload "$first" | brief

say "sync the old cloud: CreateSync, then WatchSync until it ends"
# runsync MODE prints the sync's progress as WatchSync streams it.
runsync() {
  local name
  name=$(inv CreateSync "{\"sync\":{\"cloud\":\"old\",\"mode\":\"SYNC_MODE_$1\"}}" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["sync"]["name"])')
  inv WatchSync "{\"name\":\"$name\"}" | /usr/bin/python3 -c '
import json, sys
text = sys.stdin.read(); dec = json.JSONDecoder(); i = 0; last = None
while True:
    j = text.find("{", i)
    if j < 0: break
    doc, i = dec.raw_decode(text, j); s = doc["sync"]; last = s
    c = s.get("counts", {})
    print("  %s %-22s %-20s %s" % (s["name"], s["mode"].replace("SYNC_MODE_", "").lower(), s["state"].replace("SYNC_STATE_", "").lower(),
          s.get("phase") or " ".join("%s=%s" % (k, c.get(k, 0)) for k in ("servers", "ports", "created", "updated", "unchanged", "vanished", "etcdWrites", "apiCalls"))))
for n in (last or {}).get("notes", []):
    print("    note:", n)
if last and last.get("error"): print("    error:", last["error"])'
}
runsync FULL
echo "  the workloads registered by hand got their facts (no duplicates); what the sync found:"
inv ListWorkloads '{"cloud":"old"}' | /usr/bin/python3 -c '
import json, sys
for w in json.load(sys.stdin).get("workloads", []):
    f = w.get("facts", {}).get("instance", {})
    ports = "; ".join("%s %s %s" % (p.get("macAddress"), ",".join(x["ipAddress"] + "/" + x.get("cidr", "?").split("/")[-1] for x in p.get("fixedIps", [])), p.get("networkName", ""))
                      for p in f.get("ports", [])) or "(no port)"
    vols = "".join("; volume %s %s %d GiB %s%s" % (v.get("device"), v.get("name", ""), v.get("sizeGb", 0), v.get("volumeType", ""), " (boot)" if v.get("boot") else "")
                   for v in f.get("volumes", []))
    print("  %-16s %-7s %-6s %-8s %s%s" % (w["name"], f.get("name"), f.get("status"), f.get("flavor", {}).get("name", ""), ports, vols))'
echo "  again, with nothing changed (AUTO: incremental, Nova changes-since): no etcd writes"
runsync AUTO

say "a physical server registers itself: hikkoshi-collect on this machine (read-only: /proc, /sys, /run/udev/data, /etc)"
go build -o bin/hikkoshi-collect ./services/inventory/cmd/hikkoshi-collect
bin/hikkoshi-collect --inventory "$addr" --tls-cert "$pki/collector.pem" --tls-key "$pki/collector-key.pem" --tls-ca "$pki/ca.pem" \
  --workload-id phys-demo-host --role db --stateful | sed 's/^/  /'
inv GetWorkload '{"name":"workloads/phys-demo-host"}' | /usr/bin/python3 -c '
import json, sys
w = json.load(sys.stdin)["workload"]; f = w["facts"]["physical"]
print("  %s: %s, kernel %s, %s CPUs, %d GiB" % (f["hostname"], f["osRelease"], f["kernel"], f["cpus"], int(f["memoryBytes"]) >> 30))
for d in f.get("disks", []):
    parts = ", ".join("%s %s %s" % (p["device"], p.get("filesystem", "?"), p.get("mountPoint", "")) for p in d.get("partitions", []))
    print("    disk %s %d GiB %s" % (d["device"], int(d["sizeBytes"]) >> 30, parts or ("%s on %s" % (d.get("filesystem", "?"), d.get("mountPoint", "-")))))
for n in f.get("nics", []):
    print("    nic  %s %s %s" % (n["name"], n["macAddress"], " ".join(n.get("addresses", []))))'
inv DeleteWorkload '{"name":"workloads/phys-demo-host"}' >/dev/null # the demo machine is not moving anywhere

say "plan the waves: CreatePlan proposes (stateless first, stateful last), AcceptPlan writes them"
echo "  the API depends on the database, but that does not hold it back: it may run in the new cloud while the database is still in the old one"
inv CreatePlan '{"plan":{"rules":[{"name_pattern":"^web-[0-9]+$","role":"web"},{"name_pattern":"^db","role":"db","stateful":true}],
  "dependencies":[{"role":"api","depends_on":["db"]}]}}' | tee "$state/plan.json" | /usr/bin/python3 -c '
import json, sys
p = json.load(sys.stdin)["plan"]
print("  %s (%s)" % (p["name"], p["state"].replace("PLAN_STATE_", "").lower()))
for w in p.get("waves", []):
    print("    wave %d%s: roles %s — %s" % (w["wave"], " (stateful)" if w.get("stateful") else "", ",".join(w["roles"]), " ".join(x.split("/")[1] for x in w["workloads"])))
for a in p.get("assignments", []):
    print("      %-18s wave %s  %s" % (a["workload"], a.get("wave", 0), a["reason"]))
for a in p.get("unassigned", []):
    print("      %-18s        %s" % (a["workload"], a["reason"]))'
plan=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["plan"]["name"])' "$state/plan.json")
inv AcceptPlan "{\"name\":\"$plan\"}" | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print("  accepted: %d workloads written (waves, and planned)" % r.get("updated", 0))'

say "pre-flight of wave 1 against the new cloud (read live)"
inv GetPreflight '{"wave":1,"destination":"new"}' | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)["report"]
print("  wave %s → %s: %s workloads, %.1f GiB to move, %s" % (r["wave"], r["destination"], r["workloads"], int(r.get("diskBytes", 0)) / 2**30, "ready" if r.get("ok") else "NOT ready:"))
for k, label in (("missingFlavors", "flavors missing"), ("missingImages", "images missing"), ("missingNetworks", "networks missing")):
    if r.get(k): print("    %-17s %s" % (label, ", ".join(r[k])))
for c in r.get("ipConflicts", []):
    print("    IP conflict       %s %s: %s" % (c["workload"], c["ipAddress"], c["reason"]))
print("    (netbridge and the converter will bring the network and the image)")'

say "ListWorkloads {wave: 1}"
inv ListWorkloads '{"wave":1}' | brief

say "db-1 runs on the qemu-TCG compute: a Nova snapshot of it carries its disk's bytes"
bin/hikkoshi-devcloud snapshot

say "the converter: conversion jobs, claimed by workers through etcd leases; health probes through the data plane's jump host"
go build -o bin/converter ./services/converter/cmd/converter
bin/hikkoshi-devcloud undo-moves | sed 's/^/  (a previous run: /; s/$/)/'
bin/converter --listen 127.0.0.1:7402 --etcd-endpoints http://127.0.0.1:2479 --instance demo --log-format text $(tlsflags converter) \
  --clouds-yaml tilt/.state/devcloud/clouds.yaml --poll 250ms --inventory "$addr" \
  --cloud-jobs old=2,new=2 --probe-proxy socks5://127.0.0.1:1080 \
  --clouds old,new --p2v-disk-root "${HIKKOSHI_CACHE:-$HOME/.cache/hikkoshi}/p2v" \
  --p2v-agent-network 127.0.0.1/32 --p2v-agent-token-file "$state/p2v-agent-token" >>"$state/converter.log" 2>&1 &
cvpid=$!
for _ in $(seq 1 60); do
  gc 127.0.0.1:7402 grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && break
  sleep 0.5
done
go build -o bin/hikkoshi ./cli/cmd/hikkoshi
# hk is the hikkoshi command line (mutual TLS as admin: HIKKOSHI_TLS_* above); grpcurl
# stays for reflection and the health checks.
hk() { bin/hikkoshi --inventory "$addr" --converter 127.0.0.1:7402 --netbridge 127.0.0.1:7403 --lbaas "$lbaddr" "$@"; }

say "netbridge joins the networks: old-vlan-101 shared with the new cloud on the same VLAN (plan, apply, re-plan)"
go build -o bin/netbridge ./services/netbridge/cmd/netbridge
bin/netbridge --listen 127.0.0.1:7403 --etcd-endpoints http://127.0.0.1:2479 --instance demo --log-format text $(tlsflags netbridge) \
  --clouds-yaml tilt/.state/devcloud/clouds.yaml >>"$state/netbridge.log" 2>&1 &
nbpid=$!
for _ in $(seq 1 60); do
  gc 127.0.0.1:7403 grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && break
  sleep 0.5
done
oldnet=$(bin/hikkoshi-devcloud network-id)
osadm() { OS_CLIENT_CONFIG_FILE=tilt/.state/devcloud/clouds.yaml /usr/bin/openstack --os-cloud old-admin "$@"; }
for p in $(osadm port list --network "$oldnet" --name pg-legacy-1 -f value -c ID) $(osadm port list --network "$oldnet" --name pg-legacy-2 -f value -c ID); do
  osadm port delete "$p" # an interrupted run's
done
bridge=$(hk bridge create old-vlan-101 --request-id "demo-bridge-$oldnet" -o json -f - <<EOF | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])'
mode: BRIDGE_MODE_SHARED_L2
old: {cloud: old-admin, network_id: $oldnet}
new: {cloud: new-admin, physical_network: physnet2, network_name: old-vlan-101-bridged}
shared_l2: {old_keep_free: 16}
EOF
)
echo "  hikkoshi bridge create old-vlan-101 -f - → $bridge (old-admin's old-vlan-101, VLAN 101; the new cloud carries it on physnet2)"
summary='
import json, sys, collections
p = json.load(sys.stdin)
kinds = collections.Counter("%s %s %s" % (c["action"], c["side"], c["kind"]) for c in p.get("changes", []))
print("  %d changes, %d already as planned, %d conflicts" % (len(p.get("changes", [])), p.get("unchanged", 0), len(p.get("conflicts", []))))
for k, n in sorted(kinds.items()): print("    %3d × %s" % (n, k))
s = p.get("split", {})
if s: print("  split: old pools %s → %s; new pools %s" % (s.get("originalPools"), s.get("oldPools"), s.get("newPools")))
for c in p.get("conflicts", []): print("  CONFLICT", c.get("ipAddress", ""), c["reason"])
print("  plan_etag", p.get("planEtag"))'
hk bridge plan "$bridge" -o json >"$state/plan.json"
/usr/bin/python3 -c "$summary" <"$state/plan.json"
etag=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["planEtag"])' <"$state/plan.json")
t0=$SECONDS
hk bridge apply "$bridge" --etag "$etag" -o json | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin); b = r["bridge"]
print("  hikkoshi bridge apply --etag: %d changes made, state %s, %d resources recorded" % (len(r.get("applied", [])), b["state"], len(b.get("resources", []))))'
bridge_applied=1
echo "  (apply took $((SECONDS - t0)) s)"
echo "  PlanBridge again (nothing to do):"
hk bridge plan "$bridge" -o json | /usr/bin/python3 -c "$summary" | sed -n 1p # (sed reads it all: head would close the pipe under python)
echo "  - an apply of the plan reviewed before is refused, the bridge changed since (ABORTED):"
if out=$(hk bridge apply "$bridge" --etag "$etag" 2>&1); then echo "    unexpectedly accepted" >&2; exit 1; fi
sed 's/^/    /' <<<"$out"

say "move wave 1 with the runner: the web and API roles, each server replaced beside the running one behind its load balancer"
# The inventory's commands, through hikkoshi (hikkoshi-inv has the same ones).
hinv() { hk "$@"; }
override="the converter brings each image, and netbridge's bridge is the network (old-vlan-101-bridged)"
echo "  first the pools as they were before the shows above: web-1 and api-1 back at weight 1, api-2 (an address without a server) out"
web_lb=$(lbs ListLoadBalancers '{}' | /usr/bin/python3 -c 'import json,sys; print(next(l["name"] for l in json.load(sys.stdin)["loadBalancers"] if l.get("displayName") == "shop-web"))')
lbs UpdateLoadBalancer "{\"name\":\"$web_lb\",\"member_changes\":[{\"set_weight\":{\"member\":{\"address\":\"10.101.0.21\",\"port\":8080},\"weight\":1}}]}" >/dev/null
lbs UpdateLoadBalancer "{\"name\":\"$api_name\",\"member_changes\":[{\"set_weight\":{\"member\":{\"address\":\"10.101.0.31\",\"port\":8080},\"weight\":1}},
  {\"remove\":{\"address\":\"10.101.0.32\",\"port\":8080}}]}" >/dev/null
echo "  hikkoshi wave run 1 --to new --dry-run: each workload's strategy, from its facts, its role and its load balancer's pool"
hinv wave run 1 --to new --dry-run --override-preflight "$override" | sed 's/^/  /'
echo "  the traffic meter runs through shop-web's and shop-api's VIPs (20 requests/s each) from before the run to after it"
bin/hikkoshi-devcloud traffic --lb shop-web --rate 20 --for 0 -o json >"$state/wave1-web.json" &
m1=$!
bin/hikkoshi-devcloud traffic --lb shop-api --rate 20 --for 0 -o json >"$state/wave1-api.json" &
m2=$!
sleep 2
t0=$SECONDS
echo "  hikkoshi wave run 1 --to new --role web:max_surge=1,min_healthy=1,drain=3 --role api:... --follow"
hinv wave run 1 --to new --override-preflight "$override" --request-id demo-wave-1 \
  --role web:max_surge=1,min_healthy=1,drain=3 --role api:max_surge=1,min_healthy=1,drain=3 --follow | sed 's/^/  /'
echo "  (wave 1 moved in $((SECONDS - t0)) s)"
sleep 2
kill -TERM "$m1" "$m2"; wait "$m1" "$m2" || true
/usr/bin/python3 -c '
import json, sys, time
bad = 0
for lb, f in (("shop-web", sys.argv[1]), ("shop-api", sys.argv[2])):
    r = json.load(open(f))
    print("  %s: %d requests, %d answered, %d failed %s" % (lb, r["sent"], r["answered"], r["failed"], r["failures"] or ""))
    t = lambda ms: time.strftime("%H:%M:%S", time.localtime(ms / 1000))
    for a, s in sorted(r.get("addresses", {}).items(), key=lambda kv: kv[1]["first_sent_unix_ms"]):
        print("    %-17s %4d answers, to requests sent %s → %s" % (a, s["count"], t(s["first_sent_unix_ms"]), t(s["last_sent_unix_ms"])))
    bad += r["failed"]
sys.exit(1 if bad else 0)' "$state/wave1-web.json" "$state/wave1-api.json"

say "the shop's own haproxy.cfg again, now through the lbaas service: PlanImport asks the inventory where wave 1 put its servers (and netbridge what it moved), ApplyImport builds it"
/usr/bin/python3 - "$state/import-source.json" <<'PY'
import json, sys
cfg = open("tilt/devcloud/estate/shop-haproxy.cfg").read()
json.dump({"files": [{"name": "shop-haproxy.cfg", "content": cfg}], "display_name": "shop-imported",
           "resolve_moves": True, "names_from_inventory": True}, open(sys.argv[1], "w"))
PY
src=$(cat "$state/import-source.json")
echo "  PlanImport {source: {files: [shop-haproxy.cfg], resolve_moves: true, names_from_inventory: true}}:"
lbs PlanImport "{\"source\":$src}" | /usr/bin/python3 -c '
import json, sys
p = json.load(sys.stdin)["plan"]
print("    complete: %s, %d ledger lines, %d left over" % (p.get("complete", False), len(p["ledger"]), p.get("leftovers", 0)))
for old, new in sorted(p.get("rewritten", {}).items()):
    print("    rewritten %s → %s (a wave run replaced the server there)" % (old, new))
for a, b in sorted(p.get("movedViaBridge", {}).items()):
    print("    %s moved across %s (keeps its address)" % (a, b))
for pl in p["loadBalancers"][0]["pools"]:
    for m in pl["members"]:
        print("    pool %-4s member %-6s %s:%d  (%s)" % (pl["displayName"], m["displayName"], m["address"], m["port"], p.get("named", {}).get(m["address"], "haproxy server name")))'
echo "  ApplyImport {same source, accept_leftovers, vip_subnet_id, request_id demo-shop-import}:"
lbs ApplyImport "{\"source\":$src,\"accept_leftovers\":true,\"vip_subnet_id\":\"$subnet\",\"request_id\":\"demo-shop-import-$$\"}" | /usr/bin/python3 -c '
import json, sys
for a in json.load(sys.stdin)["loadBalancers"]:
    print("    %s %s: %s in %.1f s" % (a["displayName"], a.get("name", ""), a["action"], a.get("seconds", 0)))
    with open(sys.argv[1], "w") as f: f.write(a.get("name", ""))' "$state/import-lb"
echo "  requests through its VIP 10.101.0.147 now reach wave 1's replacements:"
for h in www.example www.example api.example; do
  printf '    Host %-12s → %s\n' "$h" "$(curl -s -m 5 --socks5 127.0.0.1:1080 -H "Host: $h" http://10.101.0.147/ | /usr/bin/python3 -c 'import json,sys; a=json.load(sys.stdin); print("%s (PROXY header: %s)" % (a["server"], a["proxy"]))')"
done
lbs DeleteLoadBalancer "{\"name\":\"$(cat "$state/import-lb")\"}" >/dev/null

say "P2V: the physical database host pg-legacy-1 (/boot, / and /var apart, SATA-only initramfs, no cloud-init), dry runs first"
# dry_run DISK [MORE...]: an inspect_only job on a server's disks, and what it found.
# DISK https://...: the disks read from a hikkoshi-p2v-agent instead.
dry_run() {
  local pj more src
  more=$(/usr/bin/python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${@:2}")
  src="\"disk_path\":\"$1\",\"more_disk_paths\":$more"
  [[ $1 == https://* ]] && src="\"agent_url\":\"$1\""
  pj=$(hk job create -o json -f - <<<"{\"p2v_source\":{$src,\"inspect_only\":true}}" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
  hk job watch "$pj" -o json >"$state/p2v-dry.json"
  /usr/bin/python3 -c '
import json, sys
text = open(sys.argv[1]).read(); dec = json.JSONDecoder(); i = 0; last = None
while True:
    j = text.find("{", i)
    if j < 0: break
    doc, i = dec.raw_decode(text, j); last = doc
i = last["p2vResult"]["inspection"]
print("  dry run (inspect_only): %s, %s, bootloader %s, firmware %s, cloud-init %s" % (i["osPretty"], i["initramfsTool"], i["bootloader"], i.get("firmware", "-"), i.get("cloudInit", False)))
for p in i["partitions"]:
    what = "partition %s" % p["number"] if not p.get("logicalVolume") else "  lv %s" % p["logicalVolume"]
    if p.get("disk"): what = "disk %d %s" % (p["disk"] + 1, what)
    print("    %-20s %-11s %-6s %5.0f MiB used of %5.0f" % (what, p.get("fsType", "-"), p.get("mountPoint", "-"), int(p.get("usedBytes", 0)) / 2**20, int(p["sizeBytes"]) / 2**20))
for n in i["network"]: print("    network: %s %s" % (n["kind"], n["interfaces"]))' "$state/p2v-dry.json"
}
echo "  read over the network from hikkoshi-p2v-agent in the server's live Linux: mutual TLS (the agent serves only the converter's"
echo "  certificate) and a bearer token; the disk read-only, in verified chunks"
go build -o bin/hikkoshi-p2v-agent ./services/converter/cmd/hikkoshi-p2v-agent
bin/hikkoshi-p2v-agent --listen 127.0.0.1:7420 --disk "$disk" --token-file "$state/p2v-agent-token" \
  --tls-cert "$pki/p2v-agent.pem" --tls-key "$pki/p2v-agent-key.pem" --tls-ca "$pki/ca.pem" --allow converter >>"$state/p2v-agent.log" 2>&1 &
agentpid=$!
dry_run https://127.0.0.1:7420
kill -TERM "$agentpid"; wait "$agentpid" 2>/dev/null || true; agentpid=""
echo "  the others read in place by the worker (their paths under --p2v-disk-root); the same host laid out as CentOS's installer does it (/boot, then volume group vg-legacy; /var in two runs of extents):"
echo "  its logical volumes read with lvm2's reports, activation off — nothing activated, the worker's own VGs never seen:"
dry_run "${disk%.raw}-lvm.raw"
echo "  and as a UEFI box (GPT, an EFI system partition): converted, it gets GRUB at EFI/BOOT/BOOTX64.EFI and hw_firmware_type=uefi:"
dry_run "${disk%.raw}-uefi.raw"
echo "  and as a server of two disks (/var on the second, /dev/sdb1 in its fstab), both given in its own order:"
dry_run "${disk%.raw}-multi-a.raw" "${disk%.raw}-multi-b.raw"

say "move wave 2 with the runner: db-2 keeps its address (netbridge moves it), its disk copied warm (pre-copied while it runs, then only what changed at the cut-over) and its Cinder data volume with it (legacy-ssd mapped to the new cloud's ssd); the physical host pg-legacy-1 too, its disk converted (P2V) and booted on it; files-1, booted from a volume, boots from its volume's copy — each after the operator's go"
echo "  pg-legacy-1's address is held by a port in the old cloud (no DHCP hands it out), as an SRE reserves a physical host's address:"
pgport=$(osadm port create --network "$oldnet" --fixed-ip ip-address=10.101.0.40 --description "pg-legacy-1 (physical)" pg-legacy-1 -f value -c id)
echo "    $pgport"
echo "  the pre-flight names the volume type the new cloud lacks (db-2's legacy-ssd), and none once the run maps it:"
hinv preflight --wave 2 --destination new | grep -i "volume" | sed 's/^/  /' || true
hinv preflight --wave 2 --destination new --volume-type legacy-ssd=ssd | grep -i "volume" | sed 's/^/  /' || echo "    (no volume type missing)"
hinv wave run 2 --to new --dry-run --warm-stateful --volume-type legacy-ssd=ssd --override-preflight "$override" | sed 's/^/  /'
run2=$(hinv wave run 2 --to new --warm-stateful --volume-type legacy-ssd=ssd --override-preflight "$override" --request-id demo-wave-2 --health-check tcp:8080 -o json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
echo "  CreateRun → $run2"
# waiting NAME: wait until the run's workload NAME waits for the operator's go.
waiting() {
  for _ in $(seq 1 1200); do
    hinv wave status "$run2" -o json | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
sys.exit(0 if any(w.get("displayName") == sys.argv[1] and w.get("stepState") == "STEP_STATE_WAITING" for w in r.get("workloads", [])) else 1)' "$1" && return 0
    sleep 0.5
  done
  echo "  $1 never waited for the operator's go" >&2
  return 1
}
waiting db-2
hinv wave status "$run2" | sed 's/^/  /'
echo "  - approving a workload that is not waiting is refused (FAILED_PRECONDITION):"
if out=$(hinv wave approve "$run2" db-1 2>&1); then echo "    unexpectedly accepted: $out" >&2; exit 1; fi
echo "    $out"
echo "  hikkoshi wave approve $run2 db-2; pg-legacy-1 waits its turn (max_surge 1), then the operator has it in its live Linux and approves it:"
hinv wave approve "$run2" db-2 >/dev/null
waiting db-phys
hinv wave approve "$run2" db-phys >/dev/null
echo "  hikkoshi wave approve $run2 db-phys; files-1 (booted from a volume: moved cold, its volume copied after the stop) after it:"
waiting files-1
hinv wave approve "$run2" files-1 >/dev/null
echo "  hikkoshi wave approve $run2 files-1; then --follow:"
hinv wave status "$run2" --follow | sed 's/^/  /'
hinv wave status "$run2" -o json >"$state/wave2.json"
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
bad = r["state"] != "RUN_STATE_DONE"
for w in r.get("workloads", []):
    if w.get("downtimeMs"):
        print("  downtime of %s: %.1f s (from its %s at %s to its replacement answering the health probe on %s in the new cloud)" % (w["displayName"], int(w["downtimeMs"]) / 1000,
              "go" if w["strategy"] == "STRATEGY_PHYSICAL" else "stop", w["stoppedTime"], w.get("sourceAddress")))
    elif w["strategy"] != "STRATEGY_UNSUPPORTED":
        bad = True
    for e in w.get("events", []):
        print("    %s" % e)
sys.exit(1 if bad else 0)' "$state/wave2.json" | sed -n 1,40p
echo "  the volumes that moved with their servers (the dev cloud's volume backend: one sparse file per volume, hashed here on both sides):"
/usr/bin/python3 -c '
import json, sys
for w in json.load(open(sys.argv[1]))["workloads"]:
    if w.get("job") and w["strategy"] != "STRATEGY_PHYSICAL": print(w["job"], w["displayName"])' "$state/wave2.json" | while read -r job name; do
  hk job get "$job" -o json | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
for v in j.get("volumes", []):
    print(v["sourceVolumeId"], v["destinationVolumeId"], v["device"], v.get("sourceType", "-"), v.get("destinationType", "-"), "boot" if v.get("boot") else "data", v.get("progress", {}).get("doneBytes", 0))' |
  while read -r from to dev st dt kind copied; do
    a=$(sha256sum "tilt/.state/devcloud/lib/cinder-old/volumes/volume-$from" | cut -c1-16)
    b=$(sha256sum "tilt/.state/devcloud/lib/cinder-new/volumes/volume-$to" | cut -c1-16)
    echo "    $name $kind volume at $dev: $from ($st, sha256 $a…) → $to ($dt, sha256 $b…), $((copied >> 10)) KiB sent (the blocks in use, as qcow2)"
    [[ "$a" == "$b" ]] || { echo "    the new volume's bytes differ" >&2; exit 1; }
  done
done

say "the console's view after wave 2 (http://127.0.0.1:7480/api/snapshot: what the page draws from its event stream)"
curl -s --max-time 5 http://127.0.0.1:7480/api/snapshot | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
print("  %d workloads, %d wave runs, %d conversion jobs, %d bridges, %d load balancers, %d services registered; errors: %s" % (
      len(s["workloads"]), len(s["runs"]), len(s["jobs"]), len(s["bridges"]), len(s["loadBalancers"]), len(s["services"]), s["errors"] or "none"))
for j in s["jobs"]:
    p = j.get("progress", {})
    print("    %s %-9s %-8s %s" % (j["name"], j["state"].replace("JOB_STATE_", "").lower(), j.get("step", "").replace("JOB_STEP_", "").lower(),
          "%d of %d bytes verified" % (int(p.get("doneBytes", 0)), int(p["totalBytes"])) if p.get("totalBytes") else ""))'

say "pg-legacy-1's first boot: the image the run's P2V job made, booted under qemu (TCG) as a cloud boots it the first time"
pj=$(/usr/bin/python3 -c 'import json,sys; print(next(w["job"] for w in json.load(open(sys.argv[1]))["workloads"] if w["strategy"] == "STRATEGY_PHYSICAL"))' "$state/wave2.json")
hk job get "$pj" -o json | /usr/bin/python3 -c '
import json, sys
last = json.load(sys.stdin)
r = last.get("p2vResult", {})
print("  %s %s: image %s in the new Glance, %.0f MiB qcow2 of a %.0f MiB disk, root UUID %s; server %s on port %s" % (last["name"], last["state"].replace("JOB_STATE_", "").lower(),
      last.get("created", {}).get("imageId"), int(r.get("imageBytes", 0)) / 2**20, int(r.get("virtualBytes", 0)) / 2**20, r.get("rootUuid"),
      last.get("created", {}).get("serverId"), last.get("destination", {}).get("portId")))
print("  steps (ms): %s" % ", ".join("%s %s" % kv for kv in sorted(r.get("timingsMs", {}).items(), key=lambda kv: -int(kv[1]))))
print("  SSH host keys of the server, as inspected: %s" % ", ".join(r.get("inspection", {}).get("sshHostKeys", [])))
open(sys.argv[2], "w").write("\n".join(k.split()[1] for k in r.get("inspection", {}).get("sshHostKeys", [])) + "\n")
open(sys.argv[1], "w").write(last.get("created", {}).get("imageId", ""))' "$state/p2v-image-id" "$state/p2v-host-keys"
echo "  the image, fetched back from Glance: a virtio disk 1 GiB"
echo "  bigger than the image, the NIC with the pinned MAC (user network, restrict=on), an OpenStack config drive (vfat config-2)"
echo "  naming another host and bringing a key pair; its user data powers the server off when cloud-init is done:"
OS_CLIENT_CONFIG_FILE=tilt/.state/devcloud/clouds.yaml /usr/bin/openstack --os-cloud new image save --file "$state/p2v.qcow2" "$(cat "$state/p2v-image-id")"
rm -f "$state/p2v-boot.log" "$state/p2v-instance.qcow2" "$state/config-2.img"
vsize=$(qemu-img info --output=json "$state/p2v.qcow2" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
qemu-img create -q -f qcow2 -b "$(realpath "$state/p2v.qcow2")" -F qcow2 "$state/p2v-instance.qcow2" $((vsize + 1073741824))
mkdir -p "$state/config-2/openstack/latest"
echo '{"uuid": "9b2f6c1e-3d4a-4b5c-8e7f-0a1b2c3d4e5f", "name": "cloudy", "hostname": "cloudy.novalocal", "launch_index": 0,
 "availability_zone": "nova", "public_keys": {"demo": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHikkoshiDemoCloudKeyPair0000000000000000000 demo@nova"}}' \
  >"$state/config-2/openstack/latest/meta_data.json"
printf '#cloud-config\npower_state: {mode: poweroff, delay: now}\n' >"$state/config-2/openstack/latest/user_data"
mkfs.vfat -n config-2 -C "$state/config-2.img" 4096 >/dev/null 2>&1 # Nova labels it so (lower case)
mcopy -s -i "$state/config-2.img" "$state/config-2/openstack" ::
timeout 600 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -no-reboot -display none -monitor none -serial "file:$state/p2v-boot.log" \
  -drive "file=$state/p2v-instance.qcow2,format=qcow2,if=virtio" -drive "file=$state/config-2.img,format=raw,if=virtio,readonly=on" \
  -nic user,restrict=on,model=virtio-net-pci,mac=52:54:00:12:34:56 2>/dev/null &
qpid=$!
t0=$SECONDS
until grep -q "login:" "$state/p2v-boot.log" 2>/dev/null || ! kill -0 "$qpid" 2>/dev/null; do sleep 1; done
echo "  (login prompt after $((SECONDS - t0)) s)"
wait "$qpid" 2>/dev/null || true
grep -a -E "Command line|EXT4-fs \(vda1\): mounted|renamed from|login:|resized filesystem|Cloud-init v\. .* finished|Power down" "$state/p2v-boot.log" | sed 's/^/    /' | cut -c1-150 || true
echo "  (powered off after $((SECONDS - t0)) s) — the host keys cloud-init printed on the console (keys-to-console):"
sed -n '/BEGIN SSH HOST KEY FINGERPRINTS/,/END SSH HOST KEY FINGERPRINTS/p' "$state/p2v-boot.log" | tr -d '\r' | sed 's/^/    /' | cut -c1-150
same=0
while read -r fp; do grep -qF -- "$fp" "$state/p2v-boot.log" && same=$((same + 1)); done <"$state/p2v-host-keys"
echo "  $same of $(grep -c . "$state/p2v-host-keys") of the server's own host key fingerprints are on the console: same keys, no \"REMOTE HOST IDENTIFICATION HAS CHANGED\";"
echo "  no user made (users: []), root's authorized_keys untouched, the key pair added to ops only, the host name kept (services/converter/README.md: \"A moved server's first boot\")"
[[ $same -ge 1 && $same -eq $(grep -c . "$state/p2v-host-keys") ]] || { echo "  the first boot changed the server's host keys" >&2; exit 1; }
rm -rf "$state/p2v.qcow2" "$state/p2v-instance.qcow2" "$state/config-2.img" "$state/config-2"

say "the dev cloud back as it was, for the next run: wave 2 reverted (RevertJob, MoveAddressBack), wave 1's replacements deleted and the old servers started"
/usr/bin/python3 -c '
import json, sys
for w in json.load(open(sys.argv[1]))["workloads"]:
    if w.get("job"): print(w["job"], w["sourceAddress"], w.get("sourceServerId", "-"))' "$state/wave2.json" | while read -r job ip old; do
  hk job revert "$job" -o json | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); made = ["its server"] + (["its image"] if j.get("created", {}).get("imageId") else []) + ["its new volume %s" % v["destinationVolumeId"] for v in j.get("volumes", [])]
print("  %s %s: %s deleted" % (j["name"], j["state"].replace("JOB_STATE_", "").lower(), ", ".join(made)))'
  hk address move-back "$bridge" "$ip" -o json | /usr/bin/python3 -c 'import json,sys; [print("    " + x) for x in json.load(sys.stdin).get("steps", [])]'
  [[ "$old" == "-" ]] || OS_CLIENT_CONFIG_FILE=tilt/.state/devcloud/clouds.yaml /usr/bin/openstack --os-cloud old server start "$old"
done
osadm port delete "$pgport"
bin/hikkoshi-devcloud undo-moves | sed 's/^/  /'
for s in $(OS_CLIENT_CONFIG_FILE=tilt/.state/devcloud/clouds.yaml /usr/bin/openstack --os-cloud old server list --status SHUTOFF -f value -c ID -c Name | awk '$2 ~ /^(web|api|db|files)-[0-9]+$/ {print $1}'); do
  OS_CLIENT_CONFIG_FILE=tilt/.state/devcloud/clouds.yaml /usr/bin/openstack --os-cloud old server start "$s" 2>/dev/null || true # one started meanwhile: 409
done
for _ in $(seq 1 240); do
  [[ -z "$(OS_CLIENT_CONFIG_FILE=tilt/.state/devcloud/clouds.yaml /usr/bin/openstack --os-cloud old server list --status SHUTOFF -f value -c Name | grep -E '^(web|api|db|files)-[0-9]+$')" ]] && break
  sleep 0.5
done
echo "  the old servers run again: $(OS_CLIENT_CONFIG_FILE=tilt/.state/devcloud/clouds.yaml /usr/bin/openstack --os-cloud old server list -f value -c Name -c Status | tr '\n' ' ')"

kill -TERM "$cvpid"; wait "$cvpid" 2>/dev/null || true; cvpid=""

say "netbridge: refusals, an address moved and back, console ports, rollback"
echo "  - web-1 still runs, so its address cannot move yet (FAILED_PRECONDITION):"
if out=$(hk address move "$bridge" 10.101.0.21 2>&1); then echo "    unexpectedly accepted" >&2; exit 1; fi
sed 's/^/    /' <<<"$out"
echo "  - pg-legacy-2, a physical database host, keeps 10.101.0.41: a port in the old cloud holds it (no DHCP hands it out)."
echo "    At its cut-over MoveAddress hands it to a port in the new cloud (MAC kept); the cut-over is called off and"
echo "    MoveAddressBack gives it back — neither cloud ever has the address free:"
pgport=$(osadm port create --network "$oldnet" --fixed-ip ip-address=10.101.0.41 --description "pg-legacy-2 (physical)" pg-legacy-2 -f value -c id)
steps='import json, sys
r = json.load(sys.stdin)
for x in r.get("steps", []): print("      " + x)'
hk address move "$bridge" 10.101.0.41 --keep-mac -o json | /usr/bin/python3 -c "$steps"
echo "    RollbackBridge is refused while the address is moved (FAILED_PRECONDITION):"
if out=$(hk bridge rollback "$bridge" 2>&1); then echo "    unexpectedly accepted" >&2; exit 1; fi
sed 's/^/      /' <<<"$out" | cut -c1-160
echo "    MoveAddressBack:"
hk address move-back "$bridge" 10.101.0.41 -o json | /usr/bin/python3 -c "$steps"
osadm port delete "$pgport"
echo "  serial-console ports for the compute nodes of both clouds, read from each Nova (all on Nova's default 10000:20000 today):"
hk console-ports --cloud old-admin --cloud new-admin --assumed-current-range 10000:20000 -o json | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
for x in r["ranges"]: print("    %-9s %-24s [serial_console] port_range = %s" % (x["cloud"], x["host"], x["portRange"]))
for o in r.get("overlaps", []): print("    overlap now: %s and %s share %s" % (o["first"], o["second"], o["ports"]))'
t0=$SECONDS
hk bridge rollback "$bridge" -o json | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
print("  RollbackBridge: state %s" % r["bridge"]["state"])
for c in r.get("undone", []): print("    %s" % c["description"])'
bridge_applied=0
echo "  (rollback took $((SECONDS - t0)) s; the old pools are as they were, for the next run)"
kill -TERM "$nbpid"; wait "$nbpid" 2>/dev/null || true; nbpid=""

say "what the service refuses, and how it says so"
echo "  - a cut-over workload cannot go back to converting (FAILED_PRECONDITION):"
refused UpdateWorkload '{"workload":{"name":"workloads/web-1","state":"WORKLOAD_STATE_CONVERTING"},"update_mask":{"paths":["state"]}}'
echo "  - a bad request names its fields (INVALID_ARGUMENT with field violations):"
refused CreateWorkload '{"workload_id":"Web_3","workload":{"role":"Web Server"}}'
echo "  - a stale etag loses (ABORTED):"
refused UpdateWorkload '{"workload":{"name":"workloads/db-1","role":"database","etag":"3"},"update_mask":{"paths":["role"]}}'

say "ListWaves: progress at a glance"
inv ListWaves '{}' | /usr/bin/python3 -c '
import json, sys
for w in json.load(sys.stdin).get("waves", []):
    counts = ", ".join("%s=%d" % (c["state"].replace("WORKLOAD_STATE_", "").lower(), c["count"]) for c in w.get("stateCounts", []))
    print("  wave %s: %d workloads (%d stateful) roles=%s  %s" % (w.get("wave", 0), w["workloadCount"], w.get("statefulCount", 0), ",".join(w.get("roles", [])), counts))'

say "kill -9 the inventory, start it again on the same data directory"
before=$(inv GetWorkload '{"name":"workloads/db-1"}' | brief)
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
kill "$watcher" 2>/dev/null || true; watcher=""
echo "  killed; restarting (it waits for its old registration's lease to expire first)"
start_inventory
after=$(inv GetWorkload '{"name":"workloads/db-1"}' | brief)
echo "  before: $before"
echo "  after:  $after"
[[ "$before" == "$after" ]] && echo "  same workload, same etag"

say "the watch saw every change, in order"
/usr/bin/python3 -c '
import json, sys, re
text = open(sys.argv[1]).read()
events = []
dec = json.JSONDecoder(); i = 0
while True:
    m = re.compile(r"\{").search(text, i)
    if not m: break
    try:
        obj, end = dec.raw_decode(text, m.start()); events.append(obj); i = end
    except ValueError:
        i = m.start() + 1
from collections import Counter
c = Counter(e.get("type", "").replace("WATCH_EVENT_TYPE_", "").lower() for e in events)
print("  %d events: %s" % (len(events), ", ".join("%s=%d" % kv for kv in sorted(c.items()))))
for e in events[-3:]:
    print("  last: %s %s @%s" % (e.get("type", "").replace("WATCH_EVENT_TYPE_", "").lower(), e.get("workload", {}).get("name", ""), e.get("revision")))
' "$state/watch.json"

say "secret sweep: clouds.yaml's passwords, etcd's password, the agent's token and the PKI's private keys, looked for in every log, etcd key and value and metric"
go build -o bin/hikkoshi-sweep ./platform/cmd/hikkoshi-sweep
bin/hikkoshi-sweep --clouds-yaml tilt/.state/devcloud/clouds.yaml --pem-dir "$pki" --secret-file "$state/p2v-agent-token" \
  --log "$state/*.log" --log "$state/*.json" \
  --etcd-endpoints http://127.0.0.1:2479 --metrics https://127.0.0.1:7411/metrics --metrics https://127.0.0.1:7414/metrics \
  --tls-cert "$pki/admin.pem" --tls-key "$pki/admin-key.pem" --tls-ca "$pki/ca.pem" | sed 's/^/  /'
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "  a secret leaked" >&2; exit 1; }

say "stop (SIGTERM): the registration is withdrawn and the lease revoked"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
grep -E 'msg=(registered|"shutting down"|stopped)' "$state/inventory.log" | tail -3 | sed 's/^/  /'
echo
echo "demo done. Logs and data: $state/"
