#!/usr/bin/env bash
# Accounts and access control for the hall's Mosquitto (docs/broker.md), through Mosquitto's
# dynamic-security plugin and its own admin tool, mosquitto_ctrl.
#
#   hall-broker.sh init FILE ADMIN ADMIN_PASSWORD_FILE   broker stopped: create the plugin's file
#   hall-broker.sh setup                                 deny-by-default ACL, the collectors' role
#   hall-broker.sh add-collector NAME PASSWORD_FILE      one account per collector process
#   hall-broker.sh add-device SITE DEVICE PASSWORD_FILE  one account per device (user = DEVICE)
#   hall-broker.sh remove-device SITE DEVICE
#   hall-broker.sh set-password NAME PASSWORD_FILE       a device's or collector's new password
#
# Every command but init talks to the running broker: mosquitto_ctrl's connection options come
# from MOSQUITTO_CTRL_OPTS (e.g. "-h 127.0.0.1 -p 1883 -u hall-admin -P secret") or from its
# own ~/.config/mosquitto_ctrl file. HALL_MQTT_PREFIX is the topic prefix (default hall, as
# mqtt.prefix). Every step may be run again: what exists already is left as it is.
#
# Why the plugin and not acl_file: Mosquitto's acl_file never checks a SUBSCRIBE (it grants it
# and filters at delivery), so any device could join the collectors' shared subscription
# $share/hall-central/... and take its turn in the round robin; the broker then drops those
# batches for lack of read access. The plugin checks SUBSCRIBE against subscribeLiteral rules
# and answers 0x87 (MQTT 5) / 0x80 (3.1.1) in the SUBACK.
set -euo pipefail

PREFIX=${HALL_MQTT_PREFIX:-hall}
GROUP=hall-central  # the shared subscription group (central/collector.py SHARE_GROUP)
ID_RE='^[a-z0-9][a-z0-9_-]{0,63}$'  # docs/topics.md ids

die() { echo "hall-broker.sh: $*" >&2; exit 1; }

check_id() {  # what, value
  [[ $2 =~ $ID_RE ]] || die "$1 '$2': expected [a-z0-9][a-z0-9_-]{0,63} (docs/topics.md)"
}

read_password() {  # file
  [ -r "$1" ] || die "password file '$1' not readable"
  local pw
  pw=$(head -n1 -- "$1")
  [ -n "$pw" ] || die "password file '$1' is empty"
  printf '%s' "$pw"
}

# mosquitto_ctrl exits 0 even when the broker refuses a command; its answer says "Error: …".
ctrl() {
  local out
  # shellcheck disable=SC2086  # MOSQUITTO_CTRL_OPTS is a list of options on purpose
  out=$(mosquitto_ctrl ${MOSQUITTO_CTRL_OPTS:-} dynsec "$@" 2>&1) || die "mosquitto_ctrl $1 failed: $out"
  if grep -q 'Error:' <<<"$out"; then
    # Run again (an upgrade that adds rules): what exists already is kept as it is.
    grep -qE 'already exists|already in this (group|role)' <<<"$out" && return 0
    die "$1 ${2:-}: $(grep 'Error:' <<<"$out")"
  fi
}

acl() {  # role type topic
  ctrl addRoleACL "$1" "$2" "$3" allow
}

cmd=${1:-}
shift || true
case "$cmd" in
  init)
    [ $# -eq 3 ] || die "usage: init FILE ADMIN ADMIN_PASSWORD_FILE"
    [ -e "$1" ] && die "$1 exists already; not overwritten"
    out=$(mosquitto_ctrl dynsec init "$1" "$2" "$(read_password "$3")" 2>&1) \
      || die "mosquitto_ctrl dynsec init failed: $out"
    chmod 600 "$1"
    echo "created $1 with admin account $2; start mosquitto, then run: hall-broker.sh setup"
    ;;
  setup)
    [ $# -eq 0 ] || die "usage: setup"
    # Deny by default: an account gets exactly what its role grants, nothing more.
    ctrl setDefaultACLAccess publishClientSend deny
    ctrl setDefaultACLAccess publishClientReceive deny
    ctrl setDefaultACLAccess subscribe deny
    ctrl setDefaultACLAccess unsubscribe allow
    ctrl createRole hall-collector
    acl hall-collector subscribeLiteral "\$share/$GROUP/$PREFIX/+/+/events"
    acl hall-collector subscribeLiteral "$PREFIX/+/+/status"
    acl hall-collector publishClientReceive "$PREFIX/+/+/events"
    acl hall-collector publishClientReceive "$PREFIX/+/+/status"
    acl hall-collector publishClientSend "$PREFIX/+/+/ack"
    acl hall-collector publishClientSend "$PREFIX/+/roster"
    acl hall-collector publishClientSend "$PREFIX/+/schedule"
    acl hall-collector publishClientSend "$PREFIX/+/summary"
    acl hall-collector publishClientSend "$PREFIX/_central/status"
    ctrl createGroup hall-collectors
    ctrl addGroupRole hall-collectors hall-collector
    echo "default access: deny; role hall-collector and group hall-collectors ready (prefix $PREFIX)"
    ;;
  add-collector)
    [ $# -eq 2 ] || die "usage: add-collector NAME PASSWORD_FILE"
    check_id "collector" "$1"
    ctrl createClient "$1" -p "$(read_password "$2")"
    ctrl addGroupClient hall-collectors "$1"
    echo "collector account $1 ready"
    ;;
  add-device)
    [ $# -eq 3 ] || die "usage: add-device SITE DEVICE PASSWORD_FILE"
    check_id "site" "$1"
    check_id "device" "$2"
    site=$1 device=$2 role="device-$1-$2"
    base="$PREFIX/$site/$device"
    ctrl createRole "$role"
    acl "$role" publishClientSend "$base/events"
    acl "$role" publishClientSend "$base/status"  # also the will (offline)
    for topic in "$base/ack" "$PREFIX/$site/roster" "$PREFIX/$site/schedule" \
      "$PREFIX/$site/summary" "$PREFIX/_central/status"; do
      acl "$role" subscribeLiteral "$topic"
      acl "$role" publishClientReceive "$topic"
    done
    ctrl createClient "$device" -p "$(read_password "$3")"
    # Run again for an existing device (docs/broker.md, upgrades): its role gets the rules of
    # this release and the account keeps its password; mosquitto_ctrl answers a role given
    # twice with "Internal error", so it is given only when missing.
    # shellcheck disable=SC2086  # as in ctrl()
    held=$(mosquitto_ctrl ${MOSQUITTO_CTRL_OPTS:-} dynsec getClient "$device" 2>/dev/null || true)
    if ! grep -qE "[[:space:]]$role \(priority" <<<"$held"; then
      ctrl addClientRole "$device" "$role"
    fi
    echo "device account $device ready: publishes $base/{events,status}, reads $base/ack, $PREFIX/$site/{roster,schedule,summary}"
    ;;
  remove-device)
    [ $# -eq 2 ] || die "usage: remove-device SITE DEVICE"
    check_id "site" "$1"
    check_id "device" "$2"
    ctrl deleteClient "$2"
    ctrl deleteRole "device-$1-$2"
    echo "device account $2 removed"
    ;;
  set-password)
    # add-device / add-collector leave an existing account as it is, password included.
    [ $# -eq 2 ] || die "usage: set-password NAME PASSWORD_FILE"
    check_id "account" "$1"
    # shellcheck disable=SC2086  # as in ctrl()
    out=$(mosquitto_ctrl ${MOSQUITTO_CTRL_OPTS:-} dynsec getClient "$1" 2>&1) || true
    if grep -q 'Client not found' <<<"$out"; then
      die "no account '$1' on this broker: create it with add-device SITE $1 PASSWORD_FILE (a device) or add-collector $1 PASSWORD_FILE"
    fi
    ctrl setClientPassword "$1" "$(read_password "$2")"
    echo "password of account $1 set from $2"
    ;;
  *)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
