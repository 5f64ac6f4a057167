// Package cloudinit decides what cloud-init may do on a moved server's first boot in
// the new cloud. A moved server was moved, not rebuilt: cloud-init must not give it
// new SSH host keys, a new default user, keys in root's authorized_keys, another host
// name, other package sources, locale, time zone, NTP or password settings. It still
// grows the root file system to the flavor's disk, runs what the operator asks for
// in user data, and prints the host keys on the console.
//
// The decision is made module by module (Modules) for the module lists of the
// cloud-init versions the supported distributions ship (Debian 12's 22.4, Ubuntu's,
// RHEL/CentOS 7–9's 19.4–23.x); a module a version does not have is skipped by
// cloud-init with a warning. P2V writes Config into the new root's cloud.cfg.d;
// V2V, which does not change the copied disk, boots with UserData, which carries
// the same settings and module lists as user data (cloud-init re-reads its module
// lists after it has read the user data, before the first module runs).
package cloudinit

import (
	"fmt"
	"regexp"
	"strings"
)

// Stage is a cloud-init module list.
type Stage string

// The three module lists, in the order they run.
const (
	StageInit   Stage = "cloud_init_modules"
	StageConfig Stage = "cloud_config_modules"
	StageFinal  Stage = "cloud_final_modules"
)

// Module is one cloud-init module and whether a moved server runs it.
type Module struct {
	Name  string
	Stage Stage
	Keep  bool
	Why   string
}

// Modules is the decision for every module of the stock module lists (Debian 12's
// cloud-init 22.4.2 /etc/cloud/cloud.cfg, which Ubuntu's and RHEL's lists are
// subsets of, save the RHEL-only ones named at the end).
var Modules = []Module{
	{"migrator", StageInit, true, "cloud-init's own bookkeeping of its semaphores"},
	{"seed_random", StageInit, true, "adds the cloud's random seed to the kernel's pool; changes no file"},
	{"bootcmd", StageInit, true, "runs only commands the operator puts in user data"},
	{"write-files", StageInit, true, "writes only files the operator puts in user data"},
	{"growpart", StageInit, true, "grows the root partition to the flavor's disk"},
	{"resizefs", StageInit, true, "grows the root file system to its partition"},
	{"disk_setup", StageInit, true, "partitions only disks the operator names in user data"},
	{"mounts", StageInit, false, "would add the flavor's ephemeral disk (/mnt) and swap to the server's own fstab"},
	{"set_hostname", StageInit, false, "the server keeps its host name"},
	{"update_hostname", StageInit, false, "the server keeps its host name"},
	{"update_etc_hosts", StageInit, false, "the server keeps its /etc/hosts"},
	{"ca-certs", StageInit, true, "adds only certificates the operator puts in user data"},
	{"rsyslog", StageInit, true, "configures only what the operator puts in user data"},
	{"users-groups", StageInit, true, "creates no one: users is empty (the distribution's default user is not created)"},
	{"ssh", StageInit, false, "would delete and regenerate the host keys and put the cloud's key pair in root's authorized_keys; the key pair's destination is the job's choice (key_pair_user)"},
	{"snap", StageConfig, false, "installs snaps: not on a moved server's first boot"},
	{"ssh-import-id", StageConfig, false, "would add keys from Launchpad or GitHub to users' authorized_keys"},
	{"keyboard", StageConfig, false, "the server keeps its keyboard layout"},
	{"locale", StageConfig, false, "would set the distribution's default locale"},
	{"set-passwords", StageConfig, false, "would change password login (ssh_pwauth) and passwords; the server keeps its password settings"},
	{"grub-dpkg", StageConfig, false, "would rewrite GRUB's install device in debconf; the converter has set up the boot loader"},
	{"apt-pipelining", StageConfig, false, "would add an apt configuration file"},
	{"apt-configure", StageConfig, false, "would rewrite the package sources from the distribution's mirror template"},
	{"ubuntu-advantage", StageConfig, false, "attaches a subscription: not on a moved server's first boot"},
	{"ntp", StageConfig, false, "the server keeps its NTP configuration"},
	{"timezone", StageConfig, false, "the server keeps its time zone"},
	{"disable-ec2-metadata", StageConfig, false, "would add a route that blocks the metadata address"},
	{"runcmd", StageConfig, true, "runs only commands the operator (or the job's key pair choice) puts in user data"},
	{"byobu", StageConfig, false, "changes login shells' screen configuration"},
	{"package-update-upgrade-install", StageFinal, false, "would upgrade and install packages: a moved server is not upgraded on its first boot"},
	{"fan", StageFinal, false, "Ubuntu fan networking: the server keeps its network configuration"},
	{"landscape", StageFinal, false, "registers with Landscape: not on a moved server's first boot"},
	{"lxd", StageFinal, false, "initializes LXD: not on a moved server's first boot"},
	{"write-files-deferred", StageFinal, true, "writes only files the operator puts in user data"},
	{"puppet", StageFinal, false, "installs and starts configuration management: the server keeps its own"},
	{"chef", StageFinal, false, "installs and starts configuration management: the server keeps its own"},
	{"mcollective", StageFinal, false, "installs and starts configuration management: the server keeps its own"},
	{"salt-minion", StageFinal, false, "installs and starts configuration management: the server keeps its own"},
	{"reset_rmc", StageFinal, false, "IBM PowerVM only"},
	{"refresh_rmc_and_interface", StageFinal, false, "IBM PowerVM only"},
	{"rightscale_userdata", StageFinal, false, "RightScale only"},
	{"scripts-vendor", StageFinal, false, "the cloud's vendor data is written for servers the cloud builds (vendor data is off too)"},
	{"scripts-per-once", StageFinal, true, "runs only scripts the operator or the image put there"},
	{"scripts-per-boot", StageFinal, true, "runs only scripts the operator or the image put there"},
	{"scripts-per-instance", StageFinal, true, "runs only scripts the operator or the image put there (P2V's key pair script)"},
	{"scripts-user", StageFinal, true, "runs the operator's user-data scripts and runcmd"},
	{"ssh-authkey-fingerprints", StageFinal, true, "prints the default user's key fingerprints on the console; reads only"},
	{"keys-to-console", StageFinal, true, "prints the host keys on the console: how an operator checks them"},
	{"install-hotplug", StageFinal, false, "would reconfigure the network when NICs are hot-plugged"},
	{"phone-home", StageFinal, true, "posts only to a URL the operator puts in user data"},
	{"final-message", StageFinal, true, "prints that cloud-init is done"},
	{"power-state-change", StageFinal, true, "powers off or reboots only when the operator asks in user data"},
	// RHEL's and SUSE's lists have these besides.
	{"yum-add-repo", StageConfig, false, "would add package repositories"},
	{"spacewalk", StageConfig, false, "registers with Spacewalk: not on a moved server's first boot"},
	{"rh_subscription", StageConfig, false, "registers a subscription: not on a moved server's first boot"},
	{"zypper-add-repo", StageConfig, false, "would add package repositories"},
	{"resolv_conf", StageInit, false, "the server keeps its resolver configuration"},
}

// Options are a job's choices for the first boot.
type Options struct {
	// KeyPairUser is an existing user of the server whose authorized_keys get the
	// cloud's key pair (the public keys in the metadata); empty: the key pair goes
	// nowhere. Never a new user.
	KeyPairUser string
}

var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

// CheckUser says what is wrong with a key_pair_user name, or nil.
func CheckUser(name string) error {
	if name == "" || userRE.MatchString(name) {
		return nil
	}
	return fmt.Errorf("%q is not a user name: give an existing user's login name (lower case letters, digits, _ . -; at most 32), or leave it empty for none", name)
}

// settings is the cloud-config both Config and UserData carry, without the module
// lists.
const settings = `# The server keeps its identity: host keys, users, authorized_keys, host name,
# /etc/hosts, package sources, locale, time zone, NTP and password settings.
preserve_hostname: true
manage_etc_hosts: false
users: []
disable_root: false
ssh_deletekeys: false
ssh_genkeytypes: []
apt_preserve_sources_list: true
manage_resolv_conf: false
vendor_data: {enabled: false}
# What a cloud server gets: its root file system grown to the flavor's disk.
growpart: {mode: auto, devices: ['/']}
resize_rootfs: true
`

func moduleLists() string {
	var b strings.Builder
	for _, st := range []Stage{StageInit, StageConfig, StageFinal} {
		fmt.Fprintf(&b, "%s:\n", st)
		for _, m := range Modules {
			if m.Stage == st && m.Keep {
				fmt.Fprintf(&b, " - %s\n", m.Name)
			}
		}
	}
	return b.String()
}

// ConfigFile is where P2V writes Config in the new root. cloud-init reads
// /etc/cloud/cloud.cfg.d/*.cfg in order, after cloud.cfg: 90 comes after the
// distribution's own files.
const ConfigFile = "/etc/cloud/cloud.cfg.d/90-hikkoshi.cfg"

// KeyPairScriptFile is where P2V writes KeyPairScript: cloud-init's
// scripts-per-instance module runs it once on each new instance.
const KeyPairScriptFile = "/var/lib/cloud/scripts/per-instance/hikkoshi-key-pair"

// Config is the cloud.cfg.d file P2V writes: OpenStack's metadata, the network
// left to the server, and the identity settings and module lists.
func Config() string {
	return `# Written by Hikkoshi's P2V converter: this server was moved, not rebuilt.
# OpenStack metadata (config drive or the metadata service); the server keeps its
# own network configuration.
datasource_list: [ConfigDrive, OpenStack, None]
network: {config: disabled}
` + settings + "# Module by module: see Hikkoshi's services/converter/README.md, \"A moved server's first boot\".\n" + moduleLists()
}

// UserData is the user data a V2V move boots with: the same identity settings and
// module lists as P2V's Config, and, if the job names a user for the cloud's key
// pair, a runcmd that adds the key pair to that user's authorized_keys. A guest
// without cloud-init ignores it. (The network configuration is cloud-init's own
// business on a cloud guest: it is rendered from the new port's metadata, which
// keeps the address.)
func UserData(o Options) string {
	s := "#cloud-config\n# Written by Hikkoshi's converter: this server was moved, not rebuilt.\n" + settings + moduleLists()
	if o.KeyPairUser != "" {
		s += "runcmd:\n - [sh, -c, " + yamlQuote(KeyPairScript(o.KeyPairUser)) + "]\n"
	}
	return s
}

// KeyPairScript is a shell script that adds the instance's public keys (from
// cloud-init's instance data) to user's authorized_keys, each once, working as that
// user (a symbolic link in the user's home cannot turn it against another file).
// user must pass CheckUser.
func KeyPairScript(user string) string {
	return `#!/bin/sh
# Written by Hikkoshi: the cloud's key pair goes to ` + user + `'s authorized_keys (the
# job's choice) and nowhere else. Runs once per instance.
set -eu
user='` + user + `'
home=$(getent passwd "$user" | cut -d: -f6) || true
if [ -z "$home" ]; then
  echo "hikkoshi: no user $user here: the cloud's key pair was not installed" >&2
  exit 1
fi
keys=$(cloud-init query --format '{% for k in v1.public_ssh_keys %}{{ k }}
{% endfor %}')
[ -n "$keys" ] || exit 0
printf '%s\n' "$keys" | runuser -u "$user" -- sh -c '
  umask 077
  cd "$1" && mkdir -p .ssh && touch .ssh/authorized_keys
  while IFS= read -r k; do
    [ -z "$k" ] || grep -qxF -- "$k" .ssh/authorized_keys || printf "%s\n" "$k" >>.ssh/authorized_keys
  done' sh "$home"
echo "hikkoshi: the cloud's key pair is in $user's authorized_keys"
`
}

// yamlQuote writes s as a YAML double-quoted scalar.
func yamlQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
