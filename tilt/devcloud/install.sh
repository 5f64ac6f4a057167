#!/usr/bin/env bash
# install.sh installs the dev cloud's Debian packages (OpenStack Zed from bookworm) in
# one apt transaction, without side effects: no daemon is started by a postinst
# (policy-rc.d answers 101 for the duration), and debconf is preseeded so that no
# package configures a database, a message queue or Keystone endpoints by itself.
# Idempotent: packages already installed are left alone.
#
#   install.sh [--libvirt] [--ha]   --libvirt adds libvirt and qemu for the TCG compute,
#                                   --ha keepalived for the HA routers' L3 agents
set -euo pipefail

packages=(
  keystone glance-api neutron-api neutron-rpc-server octavia-api octavia-worker
  nova-api nova-conductor nova-scheduler python3-nova placement-api
  rabbitmq-server mariadb-server python3-pymysql python3-openstackclient
  python3-octaviaclient uwsgi-core uwsgi-plugin-python3 curl openssl iproute2 procps
  cinder-api cinder-scheduler cinder-volume qemu-utils # Cinder, with the file driver (tilt/devcloud/cinder)
  haproxy # the data plane's load balancers (tilt/devcloud/dataplane)
)
for a in "$@"; do
  case "$a" in
    --libvirt)
      # libvirt-daemon-system creates the libvirt-qemu user the qemu driver insists on.
      # genisoimage makes the config drives (the new region's TCG compute forces them).
      packages+=(libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils python3-libvirt genisoimage) ;;
    --ha)
      # The L3 agents' keepalived and arping (their binaries are in neutron-common).
      packages+=(keepalived iputils-arping) ;;
    *) echo "usage: $0 [--libvirt] [--ha]" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "devcloud install: all ${#packages[@]} packages present"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
sel=$(mktemp)
for p in keystone glance-common glance-api neutron-common neutron-api nova-common nova-api \
         octavia-common octavia-api placement-common placement-api cinder-common cinder-api; do
  cat >>"$sel" <<SEL
$p $p/configure_db boolean false
$p $p/register-endpoint boolean false
$p $p/configure_rabbit boolean false
$p $p/configure_ksat boolean false
$p $p/configure_api-endpoint boolean false
SEL
done
cat >>"$sel" <<'SEL'
dbconfig-common dbconfig-common/dbconfig-install boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
keystone keystone/configure_db boolean false
SEL
# debconf-set-selections warns about templates of packages not yet known; harmless.
debconf-set-selections <"$sel" 2>/dev/null || true
rm -f "$sel"

had_policy=0
[[ -e /usr/sbin/policy-rc.d ]] && had_policy=1
if [[ $had_policy -eq 0 ]]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi

t0=$SECONDS
if ! apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confdef \
     -o Dpkg::Options::=--force-confold "${missing[@]}" >/tmp/devcloud-apt.log 2>&1; then
  # A stale package list (a fresh machine) is the usual cause: update once, then retry.
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "${missing[@]}" >/tmp/devcloud-apt.log 2>&1 \
    || { tail -30 /tmp/devcloud-apt.log >&2; echo "devcloud install: apt-get failed (log /tmp/devcloud-apt.log)" >&2; exit 1; }
fi
echo "devcloud install: ${#missing[@]} packages in $((SECONDS - t0))s"
