#!/usr/bin/env bash
# devcloud.sh runs two real OpenStack "clouds" (Zed, from Debian bookworm's packages) on
# 127.0.0.1, for the tests, Tilt and the demo.
#
#   devcloud.sh up [--libvirt | --no-libvirt] [--ha | --no-ha]
#                               install (once), configure, start, bootstrap, seed; idempotent
#                               --libvirt adds a second compute to each region: Nova's
#                               libvirt driver with qemu in TCG mode, hosts tcg-libvirt
#                               (old) and tcg-libvirt-new (new, config drive forced),
#                               availability zone "tcg". The choice is kept in the state
#                               directory: a later plain up (after down or a crash) keeps it
#                               --ha adds two network nodes with real L3 and linuxbridge
#                               agents (hikkoshi-l3-a, hikkoshi-l3-b) that run HA routers
#                               with keepalived (ha/ha.sh); kept like --libvirt
#   devcloud.sh down [--wipe]   stop exactly what up started (by PID); --wipe deletes state
#   devcloud.sh status          which processes run and which APIs answer
#   devcloud.sh wait            wait until every API answers
#
# One Keystone holds two regions, RegionOld and RegionNew, and a project per cloud.
# Each region has its own compute stack — Glance (own store, own database), Placement,
# Nova (api, conductor, scheduler, compute with the fake driver) and Cinder (api,
# scheduler, volume with the dev cloud's file driver, cinder/) — because Nova takes its
# Glance and Cinder from its own configuration: only a Nova per region can boot in the
# new cloud from an image copied into the new Glance or a volume made in the new Cinder. Neutron (ML2 + L3, no agents) and
# Octavia (amphora provider, no-op drivers) are shared. Everything listens on
# 127.0.0.1; all state, logs and PID files live under $DEVCLOUD_DIR.
#
# The fake driver boots instantly but has no disk: a snapshot uploads no bytes. The
# TCG compute runs real qemu guests (no KVM here) whose snapshots carry the disk's
# bytes; it boots only without network ports (--nic none), because nothing here plugs
# an OVS port into a guest. libvirt keeps its own state where Debian puts it
# (/var/lib/libvirt, /run/libvirt); up writes /etc/libvirt/qemu.conf (root, no
# cgroups, no namespaces, no security driver: what a container allows), never
# autostarts libvirt's "default" NAT network, and drops the guest definitions another
# state (another clone, a wiped state) left there, whose names this state's Nova reuses.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
S="${DEVCLOUD_DIR:-$root/tilt/.state/devcloud}"
PY=/usr/bin/python3 # the python3 first on PATH may be a pyenv without these modules

# Ports (Cinder: old 8776, new 8777). Shared: keystone 5000, neutron 9696, octavia 9876, mariadb 3306, rabbit 5672.
declare -A GLANCE_PORT=([old]=9292 [new]=9293)
declare -A PLACEMENT_PORT=([old]=8778 [new]=8779)
declare -A NOVA_PORT=([old]=8774 [new]=8775)
declare -A CINDER_PORT=([old]=8776 [new]=8777)
declare -A REGION=([old]=RegionOld [new]=RegionNew)
BASTION_PORT=1080 # the data plane's jump host (SOCKS5; dataplane/bastion.py)
regions=(old new)

# shellcheck source=ha/ha.sh
source "$here/ha/ha.sh"

log() { printf '[devcloud %s] %s\n' "$(date +%T)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

phase_start=$SECONDS
declare -a timings=()
phase() {
  local now=$SECONDS
  if [[ -n "${current_phase:-}" ]]; then timings+=("$(printf '%-22s %4ds' "$current_phase" $((now - phase_start)))"); fi
  current_phase="$1"
  phase_start=$now
  [[ -n "$1" ]] && log "phase: $1"
  return 0
}

# ---------------------------------------------------------------- processes

pidfile() { echo "$S/run/$1.pid"; }

running() {
  local pf
  pf=$(pidfile "$1")
  [[ -f "$pf" ]] && kill -0 "$(cat "$pf")" 2>/dev/null
}

# start NAME CMD... runs CMD in its own session (so down can stop its whole process
# group), with its output in $S/log/NAME.log, unless NAME already runs.
start() {
  local name=$1
  shift
  if running "$name"; then return 0; fi
  setsid "$@" >>"$S/log/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# stop NAME: TERM the process group of NAME, KILL it after 15 s.
stop() {
  running "$1" || return 0
  local pid t0=$SECONDS
  pid=$(cat "$(pidfile "$1")")
  kill -TERM -- "-$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((SECONDS - t0 < 15)); do sleep 0.3; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$(pidfile "$1")"
}

# wait_http NAME URL [SECONDS]: wait until URL answers with any HTTP status.
wait_http() {
  local name=$1 url=$2 limit=${3:-180} t0=$SECONDS
  until curl -s -o /dev/null --max-time 3 "$url"; do
    if ((SECONDS - t0 > limit)); then
      tail -20 "$S/log/$name.log" >&2 || true
      die "$name does not answer at $url after ${limit}s (log: $S/log/$name.log)"
    fi
    running "$name" || { tail -30 "$S/log/$name.log" >&2; die "$name exited (log: $S/log/$name.log)"; }
    sleep 0.5
  done
}

# ---------------------------------------------------------------- secrets

secrets() {
  if [[ ! -f "$S/secrets.env" ]]; then
    umask 077
    {
      for k in DB ADMIN SERVICE OLD NEW; do
        printf '%s_PASSWORD=%s\n' "$k" "$(openssl rand -hex 16)"
      done
      printf 'OCTAVIA_PASSPHRASE=%s\n' "$(openssl rand -hex 16)" # exactly 32 characters
    } >"$S/secrets.env"
    umask 022
  fi
  # shellcheck disable=SC1091
  source "$S/secrets.env"
}

db_url() { echo "mysql+pymysql://hikkoshi:$DB_PASSWORD@127.0.0.1:3306/$1?charset=utf8"; }
transport_url() { echo "rabbit://hikkoshi:$SERVICE_PASSWORD@127.0.0.1:5672/$1"; }

# ---------------------------------------------------------------- MariaDB, RabbitMQ

mariadb_up() {
  mkdir -p "$S/mysql" "$S/run/mysqld"
  cat >"$S/etc/my.cnf" <<EOF
[mysqld]
user=root
datadir=$S/mysql
socket=$S/run/mysqld/mysqld.sock
pid-file=$S/run/mysqld/mysqld.pid
bind-address=127.0.0.1
port=3306
innodb_flush_log_at_trx_commit=2
innodb_doublewrite=0
performance_schema=off
max_connections=1000
skip-name-resolve
[client]
socket=$S/run/mysqld/mysqld.sock
EOF
  if [[ ! -d "$S/mysql/mysql" ]]; then
    mariadb-install-db --defaults-file="$S/etc/my.cnf" --user=root >"$S/log/mariadb-install.log" 2>&1 \
      || { tail "$S/log/mariadb-install.log"; die "mariadb-install-db failed"; }
  fi
  start mariadb /usr/sbin/mariadbd --defaults-file="$S/etc/my.cnf"
  local t0=$SECONDS
  until mariadb --defaults-file="$S/etc/my.cnf" -e 'select 1' >/dev/null 2>&1; do
    ((SECONDS - t0 > 60)) && { tail "$S/log/mariadb.log"; die "mariadb did not start"; }
    sleep 0.3
  done
  local sql="CREATE USER IF NOT EXISTS 'hikkoshi'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';"
  sql+="GRANT ALL PRIVILEGES ON *.* TO 'hikkoshi'@'127.0.0.1';"
  for db in keystone neutron octavia \
            glance_old placement_old nova_api_old nova_old nova_cell0_old \
            glance_new placement_new nova_api_new nova_new nova_cell0_new cinder_old cinder_new; do
    sql+="CREATE DATABASE IF NOT EXISTS $db CHARACTER SET utf8;"
  done
  mariadb --defaults-file="$S/etc/my.cnf" -e "$sql"
}

rabbit_env() {
  export HOME="$S/rabbitmq" RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE="$S/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$S/log/rabbitmq" \
    RABBITMQ_CONFIG_FILE="$S/etc/rabbitmq/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$S/etc/rabbitmq/enabled_plugins" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_PID_FILE="$S/run/rabbitmq.erlpid"
}

rabbit_up() {
  mkdir -p "$S/rabbitmq/mnesia" "$S/log/rabbitmq" "$S/etc/rabbitmq"
  printf 'listeners.tcp.1 = 127.0.0.1:5672\nloopback_users = none\n' >"$S/etc/rabbitmq/rabbitmq.conf"
  echo '[].' >"$S/etc/rabbitmq/enabled_plugins"
  (
    rabbit_env
    start epmd /usr/bin/epmd -address 127.0.0.1
    sleep 0.3
    start rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server
  )
}

# The real rabbitmqctl escript: Debian's wrapper switches HOME to /var/lib/rabbitmq
# (another Erlang cookie).
rabbit_ready() {
  (
    rabbit_env
    local t0=$SECONDS
    until /usr/lib/rabbitmq/bin/rabbitmqctl -q await_startup >/dev/null 2>&1; do
      ((SECONDS - t0 > 90)) && { tail -20 "$S/log/rabbitmq.log"; die "rabbitmq did not start"; }
      running rabbitmq || { tail -20 "$S/log/rabbitmq.log"; die "rabbitmq exited"; }
      sleep 1
    done
    /usr/lib/rabbitmq/bin/rabbitmqctl -q add_user hikkoshi "$SERVICE_PASSWORD" >/dev/null 2>&1 \
      || /usr/lib/rabbitmq/bin/rabbitmqctl -q change_password hikkoshi "$SERVICE_PASSWORD" >/dev/null
    for vh in / nova_old nova_new cinder_old cinder_new; do
      /usr/lib/rabbitmq/bin/rabbitmqctl -q add_vhost "$vh" >/dev/null 2>&1 || true
      /usr/lib/rabbitmq/bin/rabbitmqctl -q set_permissions -p "$vh" hikkoshi '.*' '.*' '.*' >/dev/null
    done
  )
}

# ---------------------------------------------------------------- configuration

# svcauth SECTION USER REGION prints a keystoneauth section.
svcauth() {
  cat <<EOF
[$1]
auth_url = http://127.0.0.1:5000
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $SERVICE_PASSWORD
region_name = $3
EOF
}

# authtoken USER [REGION] prints a [keystone_authtoken] section for a service user.
authtoken() {
  svcauth keystone_authtoken "$1" "${2:-RegionOld}"
  printf 'www_authenticate_uri = http://127.0.0.1:5000\nservice_token_roles_required = true\n'
}

configure() {
  mkdir -p "$S"/etc/{keystone,glance-old,glance-new,placement-old,placement-new,nova-old,nova-new,neutron,octavia/certs} \
    "$S"/etc/{cinder-old,cinder-new} "$S"/lib/{cinder-old/volumes,cinder-new/volumes} "$S"/lock/{cinder-old,cinder-new} \
    "$S"/lib/{glance-old/images,glance-new/images,glance-old/staging,glance-new/staging,nova-old,nova-new,octavia} \
    "$S"/lock

  cat >"$S/etc/keystone/keystone.conf" <<EOF
[DEFAULT]
log_file = $S/log/keystone-app.log
[database]
connection = $(db_url keystone)
[token]
provider = fernet
[identity]
password_hash_rounds = 4
[fernet_tokens]
key_repository = $S/etc/keystone/fernet-keys
[fernet_receipts]
key_repository = $S/etc/keystone/fernet-keys
[credential]
key_repository = $S/etc/keystone/credential-keys
EOF

  local r
  for r in "${regions[@]}"; do
    cat >"$S/etc/glance-$r/glance-api.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = ${GLANCE_PORT[$r]}
workers = 1
log_file = $S/log/glance-$r-app.log
node_staging_uri = file://$S/lib/glance-$r/staging
enabled_import_methods = [glance-direct,web-download]
show_image_direct_url = false
[database]
connection = $(db_url "glance_$r")
[paste_deploy]
flavor = keystone
config_file = /usr/share/glance-common/glance-api-paste.ini
[glance_store]
stores = file,http
default_store = file
filesystem_store_datadir = $S/lib/glance-$r/images
[oslo_concurrency]
lock_path = $S/lock
$(authtoken glance "${REGION[$r]}")
EOF

    cat >"$S/etc/placement-$r/placement.conf" <<EOF
[DEFAULT]
log_file = $S/log/placement-$r-app.log
[placement_database]
connection = $(db_url "placement_$r")
[api]
auth_strategy = keystone
$(authtoken placement "${REGION[$r]}")
EOF

    cat >"$S/etc/nova-$r/nova.conf" <<EOF
[DEFAULT]
host = host-ovs-filter-active
default_schedule_zone = nova
my_ip = 127.0.0.1
state_path = $S/lib/nova-$r
transport_url = $(transport_url "nova_$r")
compute_driver = hikkoshi_devcloud_nova.DiskFakeDriver
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_listen_port = ${NOVA_PORT[$r]}
osapi_compute_workers = 1
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
use_rootwrap_daemon = false
[api]
auth_strategy = keystone
[api_database]
connection = $(db_url "nova_api_$r")
[database]
connection = $(db_url "nova_$r")
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = -1
[oslo_concurrency]
lock_path = $S/lock
[vnc]
enabled = false
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[glance]
region_name = ${REGION[$r]}
[cinder]
os_region_name = ${REGION[$r]}
$(authtoken nova "${REGION[$r]}")
$(svcauth placement placement "${REGION[$r]}")
$(svcauth neutron neutron "${REGION[$r]}")
$(svcauth service_user nova "${REGION[$r]}")
send_service_user_token = true
EOF

    # Cinder: its own database and vhost; volumes are sparse files (cinder/). Glance
    # by address: the catalog's image entry lists both regions' endpoints and Cinder
    # takes the first one it sees.
    cat >"$S/etc/cinder-$r/cinder.conf" <<EOF
[DEFAULT]
host = devcloud-cinder-$r
my_ip = 127.0.0.1
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = ${CINDER_PORT[$r]}
osapi_volume_workers = 1
state_path = $S/lib/cinder-$r
log_file = $S/log/cinder-$r-app.log
transport_url = $(transport_url "cinder_$r")
auth_strategy = keystone
api_paste_config = /etc/cinder/api-paste.ini
rootwrap_config = /etc/cinder/rootwrap.conf
enabled_backends = file
default_volume_type = standard
glance_api_servers = http://127.0.0.1:${GLANCE_PORT[$r]}
[database]
connection = $(db_url "cinder_$r")
[file]
volume_driver = hikkoshi_devcloud_cinder.FileVolumeDriver
volume_backend_name = file
hikkoshi_volumes_dir = $S/lib/cinder-$r/volumes
[oslo_concurrency]
lock_path = $S/lock/cinder-$r
[coordination]
backend_url = file://$S/lock/cinder-$r
$(authtoken cinder "${REGION[$r]}")
$(svcauth nova nova "${REGION[$r]}")
EOF
  done

  cat >"$S/etc/neutron/neutron.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9696
core_plugin = ml2
service_plugins = router
allow_overlapping_ips = true
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
transport_url = $(transport_url "")
auth_strategy = keystone
api_paste_config = /usr/share/neutron-common/api-paste.ini
state_path = $S/lib/neutron
log_file = $S/log/neutron-app.log
[agent]
root_helper = /bin/false
[database]
connection = $(db_url neutron)
[oslo_concurrency]
lock_path = $S/lock
$(authtoken neutron RegionOld)
$(svcauth nova nova RegionOld)
EOF
  cat >"$S/etc/neutron/ml2_conf.ini" <<EOF
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = $(if ha_enabled; then echo linuxbridge,; fi)hikkoshi_fake
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:199,physnet2
[ml2_type_vxlan]
vni_ranges = 1000:1999
[securitygroup]
firewall_driver = noop
EOF

  octavia_certs
  cat >"$S/etc/octavia/octavia.conf" <<EOF
[DEFAULT]
transport_url = $(transport_url "")
log_file = $S/log/octavia-app.log
[api_settings]
bind_host = 127.0.0.1
bind_port = 9876
auth_strategy = keystone
default_provider_driver = amphora
enabled_provider_drivers = amphora:The Octavia Amphora driver (no-op backends in the dev cloud)
[database]
connection = $(db_url octavia)
[controller_worker]
amphora_driver = hikkoshi_netns_amphora_driver
compute_driver = compute_noop_driver
network_driver = hikkoshi_vip_network_driver
volume_driver = volume_noop_driver
image_driver = image_noop_driver
distributor_driver = noop_distributor
loadbalancer_topology = SINGLE
amp_boot_network_list = 00000000-0000-0000-0000-00000000b007
amp_flavor_id = amphora
amp_secgroup_list = lb-mgmt-sec-grp
amp_image_tag = amphora
client_ca = $S/etc/octavia/certs/ca_01.pem
workers = 1
[certificates]
cert_generator = local_cert_generator
ca_certificate = $S/etc/octavia/certs/ca_01.pem
ca_private_key = $S/etc/octavia/certs/private/cakey.pem
ca_private_key_passphrase = $OCTAVIA_PASSPHRASE
server_certs_key_passphrase = $OCTAVIA_PASSPHRASE
[haproxy_amphora]
# The data plane's haproxy needs two file descriptors per connection, and this
# machine's hard limit is 20000 (an amphora's unit allows 2600000): Octavia's default
# of 50000 connections per listener would not start.
default_connection_limit = 1000
server_ca = $S/etc/octavia/certs/ca_01.pem
client_cert = $S/etc/octavia/certs/client.pem
[task_flow]
jobboard_enabled = False
[oslo_messaging]
topic = octavia_prov
[oslo_concurrency]
lock_path = $S/lock
$(authtoken octavia RegionOld)
$(svcauth service_auth octavia RegionOld)
EOF
}

octavia_certs() {
  local d="$S/etc/octavia/certs"
  [[ -f "$d/ca_01.pem" && -f "$d/client.pem" ]] && return 0
  mkdir -p "$d/private"
  openssl req -x509 -newkey rsa:2048 -days 3650 -subj "/CN=hikkoshi-devcloud-octavia-ca" \
    -passout "pass:$OCTAVIA_PASSPHRASE" -keyout "$d/private/cakey.pem" -out "$d/ca_01.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=octavia-controller" \
    -keyout "$d/client.key" -out "$d/client.csr" 2>/dev/null
  openssl x509 -req -in "$d/client.csr" -CA "$d/ca_01.pem" -CAkey "$d/private/cakey.pem" \
    -passin "pass:$OCTAVIA_PASSPHRASE" -CAcreateserial -days 3650 -out "$d/client.crt" 2>/dev/null
  cat "$d/client.crt" "$d/client.key" >"$d/client.pem"
}

# ---------------------------------------------------------------- databases

# once NAME CMD... runs a setup step once per state directory.
once() {
  local name=$1
  shift
  [[ -f "$S/done/$name" ]] && return 0
  mkdir -p "$S/done"
  "$@" >>"$S/log/setup-$name.log" 2>&1 || { tail -30 "$S/log/setup-$name.log" >&2; die "setup step $name failed (log: $S/log/setup-$name.log)"; }
  touch "$S/done/$name"
}

db_sync() {
  local kc="$S/etc/keystone/keystone.conf"
  once keystone-db keystone-manage --config-file "$kc" db_sync
  once keystone-fernet keystone-manage --config-file "$kc" fernet_setup --keystone-user root --keystone-group root
  once keystone-credential keystone-manage --config-file "$kc" credential_setup --keystone-user root --keystone-group root
  once keystone-bootstrap keystone-manage --config-file "$kc" bootstrap \
    --bootstrap-password "$ADMIN_PASSWORD" --bootstrap-username admin --bootstrap-project-name admin \
    --bootstrap-role-name admin --bootstrap-service-name keystone --bootstrap-region-id RegionOld \
    --bootstrap-admin-url http://127.0.0.1:5000/v3 --bootstrap-internal-url http://127.0.0.1:5000/v3 \
    --bootstrap-public-url http://127.0.0.1:5000/v3
  once neutron-db neutron-db-manage --config-file "$S/etc/neutron/neutron.conf" \
    --config-file "$S/etc/neutron/ml2_conf.ini" upgrade head
  once octavia-db octavia-db-manage --config-file "$S/etc/octavia/octavia.conf" upgrade head
  local r
  for r in "${regions[@]}"; do
    once "glance-$r-db" glance-manage --config-file "$S/etc/glance-$r/glance-api.conf" db_sync
    once "placement-$r-db" placement-manage --config-file "$S/etc/placement-$r/placement.conf" db sync
    local nc="$S/etc/nova-$r/nova.conf"
    once "nova-$r-api-db" nova-manage --config-file "$nc" api_db sync
    once "nova-$r-cell0" nova-manage --config-file "$nc" cell_v2 map_cell0 --database_connection "$(db_url "nova_cell0_$r")"
    once "nova-$r-cell1" nova-manage --config-file "$nc" cell_v2 create_cell --name cell1 \
      --database_connection "$(db_url "nova_$r")" --transport-url "$(transport_url "nova_$r")"
    once "nova-$r-db" nova-manage --config-file "$nc" db sync
    once "cinder-$r-db" cinder-manage --config-file "$S/etc/cinder-$r/cinder.conf" db sync
  done
}

# ---------------------------------------------------------------- services

# fake_ml2 installs the dev cloud's ML2 driver (ml2/hikkoshi_fake_ml2.py) where only
# neutron-server sees it: a module and an entry point on its PYTHONPATH.
fake_ml2() {
  local d="$S/pylib" di="$S/pylib/hikkoshi_fake_ml2-1.0.dist-info"
  mkdir -p "$di"
  cp "$here/ml2/hikkoshi_fake_ml2.py" "$d/"
  printf 'Metadata-Version: 2.1\nName: hikkoshi-fake-ml2\nVersion: 1.0\n' >"$di/METADATA"
  printf '[neutron.ml2.mechanism_drivers]\nhikkoshi_fake = hikkoshi_fake_ml2:FakeAgentMechanismDriver\n' >"$di/entry_points.txt"
}

uwsgi() {
  local name=$1 port=$2 file=$3
  shift 3
  start "$name" env "$@" uwsgi_python3 --master --die-on-term --need-app --lazy-apps --enable-threads \
    --processes 1 --threads 4 --http-socket "127.0.0.1:$port" --add-header "Connection: close" \
    --wsgi-file "$file" --pidfile "$S/run/$name.uwsgi.pid"
}

# dataplane_drivers installs the data plane's drivers (dataplane/: Nova's
# DiskFakeDriver, Octavia's amphora and network drivers, the stand-in) beside the ML2
# driver, and the entry points through which Octavia's stevedore finds its two drivers.
dataplane_drivers() {
  local d="$S/pylib" di="$S/pylib/hikkoshi_devcloud_dataplane-1.0.dist-info"
  mkdir -p "$di" "$S/dataplane"
  cp "$here"/dataplane/*.py "$d/"
  printf 'Metadata-Version: 2.1\nName: hikkoshi-devcloud-dataplane\nVersion: 1.0\n' >"$di/METADATA"
  printf '%s\n' '[octavia.amphora.drivers]' \
    'hikkoshi_netns_amphora_driver = hikkoshi_devcloud_octavia:NetnsAmphoraDriver' \
    '[octavia.network.drivers]' \
    'hikkoshi_vip_network_driver = hikkoshi_devcloud_octavia:VipNetworkDriver' >"$di/entry_points.txt"
}

# cinder_driver installs the dev cloud's Cinder volume driver (cinder/) beside the ML2
# driver; cinder-volume imports it by its configured path.
cinder_driver() {
  cp "$here/cinder/hikkoshi_devcloud_cinder.py" "$S/pylib/"
}

# dp runs the data plane's own helper: up (the namespace), down (every stand-in and
# haproxy stopped, the namespace removed), status (who holds which address).
dp() { HIKKOSHI_DATAPLANE_DIR="$S/dataplane" "$PY" "$here/dataplane/hikkoshi_dataplane.py" "$@"; }

# ---------------------------------------------------------------- libvirt (TCG compute)

libvirt_enabled() { [[ -f "$S/libvirt.enabled" ]]; }

libvirt_configure() {
  mkdir -p "$S/etc/libvirt" "$S/etc/nova-old-tcg" "$S/etc/nova-new-tcg"
  cat >"$S/etc/libvirt/libvirtd.conf" <<EOF
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:stderr"
EOF
  local q
  q=$(cat <<'EOF'
# Written by hikkoshi's tilt/devcloud/devcloud.sh (up --libvirt): qemu runs as root
# without cgroups, mount namespaces or a security driver, which a container allows.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
)
  [[ "$(cat /etc/libvirt/qemu.conf 2>/dev/null)" == "$q" ]] || printf '%s
' "$q" >/etc/libvirt/qemu.conf
  # libvirt-daemon-config-network autostarts a NAT bridge with a non-loopback address.
  rm -f /etc/libvirt/qemu/networks/autostart/default.xml
  # One TCG compute per region, both on this libvirtd. Each region's Nova counts its
  # instances from 1 and names its guests after that count: the new region's guests
  # are named new-instance-<id>, so that the two never ask libvirt for the same name.
  # The new region's compute forces a config drive, as clouds whose guests cannot
  # reach the metadata service do: nothing here gives a TCG guest a network.
  local r
  for r in old new; do
    mkdir -p "$S/lib/nova-$r-tcg/instances"
    {
      cat <<EOF
[DEFAULT]
host = $(tcg_host "$r")
state_path = $S/lib/nova-$r-tcg
instances_path = $S/lib/nova-$r-tcg/instances
compute_driver = libvirt.LibvirtDriver
resume_guests_state_on_host_boot = true
# The seed image is a bare disk: nothing in it answers ACPI, so a clean stop would
# wait the default 60 s before libvirt destroys the guest. An image of a real OS
# asks for its own (the image property os_shutdown_timeout).
shutdown_timeout = 5
mkisofs_cmd = genisoimage
EOF
      if [[ $r == new ]]; then
        printf 'instance_name_template = new-instance-%%08x\nforce_config_drive = true\n'
      fi
      cat <<EOF
[libvirt]
virt_type = qemu
connection_uri = qemu:///system
cpu_mode = none
images_type = qcow2
snapshot_image_format = qcow2
EOF
    } >"$S/etc/nova-$r-tcg/nova-tcg.conf"
  done
}

# tcg_host REGION: the TCG compute's host name in the region (old or new).
tcg_host() { if [[ $1 == old ]]; then echo tcg-libvirt; else echo tcg-libvirt-new; fi; }

libvirt_up() {
  if [[ -f /run/libvirtd.pid ]] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null && ! running libvirtd; then
    die "a libvirtd this script did not start runs (pid $(cat /run/libvirtd.pid)); stop it or run up without --libvirt"
  fi
  start libvirtd /usr/sbin/libvirtd --config "$S/etc/libvirt/libvirtd.conf"
  local t0=$SECONDS
  until "$PY" -c "import libvirt, sys; libvirt.registerErrorHandler(lambda *a: None, None); libvirt.open('qemu:///system')" 2>/dev/null; do
    running libvirtd || { tail -20 "$S/log/libvirtd.log" >&2; die "libvirtd exited (log: $S/log/libvirtd.log)"; }
    ((SECONDS - t0 < 60)) || die "libvirtd does not answer after 60s (log: $S/log/libvirtd.log)"
    sleep 0.3
  done
}

# libvirt_domains ACTION: destroy (stop) or undefine the guests of this state directory;
# "foreign" undefines the guests another dev cloud state left in libvirt's system-wide
# /etc/libvirt/qemu (a wiped state, another clone). Nova names its guests
# instance-<db id>, and a fresh state counts from 1 again: a leftover instance-00000002
# makes libvirt refuse this state's instance-00000002 ("already exists with uuid"), and
# Nova puts that server in ERROR. A guest of another state gets its definition back
# from Nova when that state starts it again (a start re-creates it). A domain that is not
# a dev cloud's but whose name a guest of ours could take is left alone and named.
libvirt_domains() {
  "$PY" - "$1" "$S/" <<'PYEOF2'
import re, sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
action, state = sys.argv[1], sys.argv[2]
try:
    conn = libvirt.open("qemu:///system")
except libvirt.libvirtError:
    sys.exit(0)
for d in conn.listAllDomains():
    xml = d.XMLDesc()
    if action == "foreign":
        if state in xml:
            continue
        m = re.search(r"<source file='([^']*)/lib/nova-(?:old|new)-tcg/instances/", xml)
        if not m:
            if "instance-" in d.name():
                print(f"libvirt guest {d.name()} is not a dev cloud's; if Nova here needs that name, its server will fail to build", file=sys.stderr)
            continue
        print(f"dropping libvirt guest {d.name()} of another dev cloud state ({m.group(1)})", file=sys.stderr)
        if d.isActive():
            d.destroy()
        d.undefine()
        continue
    if state not in xml:
        continue  # not a guest of this dev cloud
    if d.isActive():
        d.destroy()
    if action == "undefine":
        d.undefine()
PYEOF2
}

start_identity() {
  uwsgi keystone 5000 /usr/bin/keystone-wsgi-public OS_KEYSTONE_CONFIG_FILES="$S/etc/keystone/keystone.conf"
  wait_http keystone http://127.0.0.1:5000/v3
}

start_services() {
  local r dpenv=(PYTHONPATH="$S/pylib" HIKKOSHI_DATAPLANE_DIR="$S/dataplane")
  fake_ml2
  dataplane_drivers
  cinder_driver
  dp up | sed 's/^/  /'
  local neutron_ha=()
  if ha_enabled; then
    ha_server_conf >"$S/etc/neutron/neutron-ha.conf"
    neutron_ha=(--config-file "$S/etc/neutron/neutron-ha.conf")
  fi
  start neutron-server env PYTHONPATH="$S/pylib" /usr/bin/neutron-server \
    --config-file "$S/etc/neutron/neutron.conf" --config-file "$S/etc/neutron/ml2_conf.ini" "${neutron_ha[@]}"
  uwsgi octavia-api 9876 /usr/bin/octavia-wsgi OCTAVIA_CONFIG_FILE="$S/etc/octavia/octavia.conf" \
    UWSGI_PYARGV="--config-file $S/etc/octavia/octavia.conf" "${dpenv[@]}"
  start octavia-worker env "${dpenv[@]}" ${HIKKOSHI_HEALTH_INTERVAL:+HIKKOSHI_HEALTH_INTERVAL=$HIKKOSHI_HEALTH_INTERVAL} /usr/bin/octavia-worker --config-file "$S/etc/octavia/octavia.conf"
  # The jump host: SOCKS5 on the host's loopback, connecting inside the data plane.
  start dataplane-bastion env "${dpenv[@]}" "$PY" "$S/pylib/bastion.py" --listen "127.0.0.1:$BASTION_PORT"
  for r in "${regions[@]}"; do
    start "glance-$r" /usr/bin/glance-api --config-file "$S/etc/glance-$r/glance-api.conf"
    uwsgi "placement-$r" "${PLACEMENT_PORT[$r]}" /usr/bin/placement-api OS_PLACEMENT_CONFIG_DIR="$S/etc/placement-$r"
    local nc="$S/etc/nova-$r/nova.conf"
    start "nova-api-$r" /usr/bin/nova-api --config-file "$nc"
    start "nova-conductor-$r" /usr/bin/nova-conductor --config-file "$nc"
    start "nova-scheduler-$r" /usr/bin/nova-scheduler --config-file "$nc"
    # Nova loads compute_driver from nova.virt only: the launcher adds the data
    # plane's directory to that package's path (nova.virt.hikkoshi_devcloud_nova).
    start "nova-compute-$r" env "${dpenv[@]}" "$PY" -c "import sys, nova.virt; nova.virt.__path__.append('$S/pylib'); from nova.cmd.compute import main; sys.exit(main())" --config-file "$nc"
    local cc="$S/etc/cinder-$r/cinder.conf"
    start "cinder-api-$r" /usr/bin/cinder-api --config-file "$cc"
    start "cinder-scheduler-$r" /usr/bin/cinder-scheduler --config-file "$cc"
    start "cinder-volume-$r" env PYTHONPATH="$S/pylib" /usr/bin/cinder-volume --config-file "$cc"
  done
  if libvirt_enabled; then
    libvirt_up
    libvirt_domains foreign
    for r in "${regions[@]}"; do
      start "nova-compute-$r-tcg" "$PY" -c 'import sys; from nova.cmd.compute import main; sys.exit(main())' \
        --config-file "$S/etc/nova-$r/nova.conf" --config-file "$S/etc/nova-$r-tcg/nova-tcg.conf"
    done
  elif running libvirtd || running nova-compute-old-tcg || running nova-compute-new-tcg; then # up --no-libvirt
    stop nova-compute-old-tcg
    stop nova-compute-new-tcg
    libvirt_domains destroy
    stop libvirtd
  fi
}

wait_apis() {
  wait_http keystone http://127.0.0.1:5000/v3
  wait_http neutron-server http://127.0.0.1:9696/
  wait_http octavia-api http://127.0.0.1:9876/
  local r
  for r in "${regions[@]}"; do
    wait_http "glance-$r" "http://127.0.0.1:${GLANCE_PORT[$r]}/"
    wait_http "placement-$r" "http://127.0.0.1:${PLACEMENT_PORT[$r]}/"
    wait_http "nova-api-$r" "http://127.0.0.1:${NOVA_PORT[$r]}/"
    wait_http "cinder-api-$r" "http://127.0.0.1:${CINDER_PORT[$r]}/"
  done
}

services=(mariadb epmd rabbitmq keystone neutron-server octavia-api octavia-worker dataplane-bastion
  glance-old placement-old nova-api-old nova-conductor-old nova-scheduler-old nova-compute-old
  glance-new placement-new nova-api-new nova-conductor-new nova-scheduler-new nova-compute-new
  cinder-api-old cinder-scheduler-old cinder-volume-old cinder-api-new cinder-scheduler-new cinder-volume-new
  libvirtd nova-compute-old-tcg nova-compute-new-tcg "${ha_services[@]}")

# ---------------------------------------------------------------- commands

cmd_up() {
  mkdir -p "$S"
  local a
  for a in "$@"; do
    case "$a" in
      --libvirt) touch "$S/libvirt.enabled" ;;
      --no-libvirt) rm -f "$S/libvirt.enabled" ;;
      --ha) touch "$S/ha.enabled" ;;
      --no-ha) rm -f "$S/ha.enabled" ;;
      *) die "usage: $0 up [--libvirt | --no-libvirt] [--ha | --no-ha]" ;;
    esac
  done
  # openstacksdk in bootstrap.py would follow a caller's OS_CLOUD, OS_REGION_NAME, ...
  local v
  for v in "${!OS_@}"; do unset "$v"; done
  local t0=$SECONDS
  mkdir -p "$S"/{etc,log,run}
  phase install
  local extras=()
  if libvirt_enabled; then extras+=(--libvirt); fi
  if ha_enabled; then extras+=(--ha); fi
  "$here/install.sh" "${extras[@]}"
  phase "mariadb+rabbitmq"
  secrets
  mariadb_up
  rabbit_up
  configure
  if libvirt_enabled; then libvirt_configure; fi
  if ha_enabled; then ha_configure; fi
  rabbit_ready
  phase "migrations"
  db_sync
  phase "keystone"
  start_identity
  phase "bootstrap catalog"
  "$PY" "$here/bootstrap.py" --state "$S" --phase catalog
  phase "services start"
  start_services
  wait_apis
  if ha_enabled; then
    phase "ha network nodes"
    ha_up
  elif [[ -d "$S/run/ha" ]]; then # up --no-ha
    for a in "${ha_services[@]}"; do stop "$a"; done
    ha_down
  fi
  phase "cells+seed"
  local r
  for r in "${regions[@]}"; do
    "$PY" "$here/bootstrap.py" --state "$S" --phase wait-compute --region "${REGION[$r]}"
    if libvirt_enabled; then
      "$PY" "$here/bootstrap.py" --state "$S" --phase wait-compute --region "${REGION[$r]}" --host "$(tcg_host "$r")"
    fi
    nova-manage --config-file "$S/etc/nova-$r/nova.conf" cell_v2 discover_hosts >>"$S/log/setup-discover.log" 2>&1
  done
  if libvirt_enabled; then "$PY" "$here/bootstrap.py" --state "$S" --phase tcg-zone; fi
  "$PY" "$here/bootstrap.py" --state "$S" --phase seed
  phase ""
  log "up in $((SECONDS - t0))s; phases:"
  printf '  %s\n' "${timings[@]}"
  log "clouds.yaml: $S/clouds.yaml (entries old, new, admin, old-admin, new-admin); export OS_CLIENT_CONFIG_FILE=$S/clouds.yaml"
}

# cmd_restart SERVICE...: stop the services named and start them again (what an
# API process's restart does to its callers: chaos tests use it).
cmd_restart() {
  (($#)) || die "usage: $0 restart SERVICE..."
  local v n
  for v in "${!OS_@}"; do unset "$v"; done
  secrets
  for n in "$@"; do
    case " ${services[*]} " in
      *" $n "*) ;;
      *) die "restart: $n is not a dev cloud service: one of ${services[*]}" ;;
    esac
    stop "$n"
  done
  start_services >/dev/null
  wait_apis
  log "restarted: $*"
}

cmd_down() {
  local wipe=0
  [[ "${1:-}" == "--wipe" ]] && wipe=1
  # TERM every process group at once, give them one grace period together, then KILL.
  local s pids=() t0=$SECONDS
  # Guests are libvirt's children, not ours: stop them while libvirtd still answers.
  if running libvirtd; then libvirt_domains destroy; fi
  for s in "${services[@]}"; do
    running "$s" || continue
    pids+=("$(cat "$(pidfile "$s")")")
    kill -TERM -- "-${pids[-1]}" 2>/dev/null || true
  done
  local p alive
  while :; do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive == 0 || SECONDS - t0 >= 15)) && break
    sleep 0.3
  done
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  for s in "${services[@]}"; do rm -f "$(pidfile "$s")"; done
  # The data plane's stand-ins and haproxies outlive their services' restarts (as
  # guests and amphorae do): down stops them and removes the namespace.
  if [[ -d "$S/dataplane" ]]; then dp down | sed 's/^/  /'; fi
  if [[ -d "$S/run/ha" ]]; then ha_down; fi
  log "stopped in $((SECONDS - t0))s"
  if ((wipe)); then
    # libvirt keeps guest definitions in /etc/libvirt/qemu; drop those of this state.
    local x
    for x in /etc/libvirt/qemu/instance-*.xml /etc/libvirt/qemu/new-instance-*.xml; do
      [[ -f "$x" ]] && grep -qF "$S/" "$x" && rm -f "$x"
    done
    rm -rf "$S"
    log "wiped $S"
  fi
}

cmd_status() {
  local s
  for s in "${services[@]}"; do
    if running "$s"; then printf '  %-20s running (pid %s)\n' "$s" "$(cat "$(pidfile "$s")")"; else printf '  %-20s stopped\n' "$s"; fi
  done
}

# cmd_listeners prints every TCP listener of the dev cloud's processes (and their
# children) and fails if one is not on loopback.
cmd_listeners() {
  local pgids=() s bad=0
  for s in "${services[@]}"; do
    running "$s" && pgids+=("$(cat "$(pidfile "$s")")")
  done
  [[ ${#pgids[@]} -gt 0 ]] || die "nothing is running"
  local pids
  pids=$(ps -eo pid=,pgid= | awk -v g=" ${pgids[*]} " 'index(g, " " $2 " ") { print $1 }')
  # qemu guests run in libvirt's sessions, not ours; they are ours if they use our disks.
  pids+=$'\n'"$(pgrep -f "qemu-system.*$S/" || true)"
  while read -r line; do
    local addr pid
    addr=$(awk '{print $4}' <<<"$line")
    pid=$(grep -o 'pid=[0-9]*' <<<"$line" | head -1 | cut -d= -f2 || true)
    [[ -n "$pid" ]] || continue
    grep -qx "$pid" <<<"$pids" || continue
    case "$addr" in
      127.*|\[::1\]:*) printf '  ok   %-22s %s\n' "$addr" "$(grep -o '"[^"]*"' <<<"$line" | head -1)" ;;
      *) printf '  BAD  %-22s %s\n' "$addr" "$line"; bad=1 ;;
    esac
  done < <(ss -ltnpH)
  ((bad == 0)) || die "a dev cloud process listens beyond loopback"
  log "every dev cloud listener is on loopback"
}

case "${1:-}" in
  listeners) cmd_listeners ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status; if [[ -d "$S/dataplane" ]]; then dp status | sed "s/^/  /"; fi ;;
  wait) wait_apis ;;
  restart) shift; cmd_restart "$@" ;;
  *) echo "usage: $0 up [--libvirt | --no-libvirt] [--ha | --no-ha] | down [--wipe] | status | wait | listeners | restart SERVICE..." >&2; exit 2 ;;
esac
