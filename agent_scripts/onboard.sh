#!/bin/sh
# Register this server with AWS Systems Manager as a hybrid managed node and print its id (mi-...).
#
# Usage (as root, SSM Agent already installed from the distribution/AWS package):
#   onboard.sh --code ACTIVATION_CODE --id ACTIVATION_ID --region REGION [--force]
# or with ACTIVATION_CODE, ACTIVATION_ID and AWS_REGION in the environment.
#
# It stops the SSM Agent, registers it with the activation (amazon-ssm-agent -register), enables and starts
# the service, and prints the managed-instance id on the last line of standard output. POSIX sh only.
# Safe to run twice: a server that is already registered keeps its id (only --force registers it anew).
# KEYROTATION_ROOT (tests) prefixes the SSM Agent's registration file, as for the agent (docs/design.md).
# Exit codes: 0 registered; 2 bad arguments; 3 not root / no SSM Agent; 4 registration failed;
#             5 service did not start; 6 no mi- id found after registration.
set -u

usage() {
    echo "usage: $0 --code ACTIVATION_CODE --id ACTIVATION_ID --region REGION [--force]" >&2
    exit 2
}

fail() {
    code=$1
    shift
    echo "onboard: $*" >&2
    exit "$code"
}

code=${ACTIVATION_CODE-}
id=${ACTIVATION_ID-}
region=${AWS_REGION-}
force=no
while [ $# -gt 0 ]; do
    case $1 in
        --code) [ $# -ge 2 ] || usage; code=$2; shift 2 ;;
        --code=*) code=${1#--code=}; shift ;;
        --id) [ $# -ge 2 ] || usage; id=$2; shift 2 ;;
        --id=*) id=${1#--id=}; shift ;;
        --region) [ $# -ge 2 ] || usage; region=$2; shift 2 ;;
        --region=*) region=${1#--region=}; shift ;;
        --force) force=yes; shift ;;
        -h|--help) usage ;;
        *) echo "onboard: unknown argument" >&2; usage ;;
    esac
done

# Strict shapes: these values end up on a command line run as root.
matches() {
    printf '%s\n' "$1" | grep -Eqx "$2" && [ "$(printf '%s' "$1" | wc -l)" -eq 0 ]
}
matches "$code" '[A-Za-z0-9/+=]{20,250}' || fail 2 "the activation code is missing or malformed"
matches "$id" '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' \
    || fail 2 "the activation id is missing or not a UUID"
matches "$region" '[a-z]{2}(-[a-z]+)+-[0-9]{1,2}' || fail 2 "the region is missing or malformed"

[ "$(id -u)" -eq 0 ] || fail 3 "run as root"

agent=''
for candidate in amazon-ssm-agent /usr/bin/amazon-ssm-agent /snap/amazon-ssm-agent/current/amazon-ssm-agent; do
    if command -v "$candidate" >/dev/null 2>&1; then
        agent=$(command -v "$candidate")
        break
    fi
done
[ -n "$agent" ] || fail 3 "amazon-ssm-agent is not installed"

service() {  # service ACTION: systemd, then snap, then SysV
    if command -v systemctl >/dev/null 2>&1; then
        systemctl "$1" amazon-ssm-agent
    elif command -v snap >/dev/null 2>&1 && snap list amazon-ssm-agent >/dev/null 2>&1; then
        snap "$1" amazon-ssm-agent
    else
        command service amazon-ssm-agent "$1"
    fi
}

registration="${KEYROTATION_ROOT-}/var/lib/amazon/ssm/registration"
registered_id() {
    if [ -f "$registration" ]; then
        grep -o 'mi-[0-9a-f]\{17\}' "$registration" | head -n 1
    fi
}

output=''
if [ -n "$(registered_id)" ] && [ "$force" = no ]; then
    echo "onboard: already registered as $(registered_id); use --force to register again" >&2
else
    # Registering needs the agent stopped; it may not be running yet, which is fine.
    service stop >/dev/null 2>&1 || true
    output=$("$agent" -register -code "$code" -id "$id" -region "$region" -y 2>&1)
    status=$?
    printf '%s\n' "$output" >&2
    [ "$status" -eq 0 ] || fail 4 "amazon-ssm-agent -register failed (exit $status)"
fi

if command -v systemctl >/dev/null 2>&1; then
    systemctl enable amazon-ssm-agent >/dev/null 2>&1 || true
fi
service start >&2 || fail 5 "could not start the amazon-ssm-agent service"

instance=$(registered_id)
if [ -z "$instance" ]; then
    instance=$(printf '%s\n' "$output" | grep -o 'mi-[0-9a-f]\{17\}' | head -n 1)
fi
[ -n "$instance" ] || fail 6 "registered, but no managed-instance id (mi-...) was found"
echo "$instance"
