#!/bin/bash
# Runs once, after the InfluxDB 2.x image's own setup (DOCKER_INFLUXDB_INIT_MODE=setup),
# with the influx CLI already logged in as the operator.
#  - maps the InfluxQL database "econome" to the bucket (DBRP), so Grafana's InfluxQL
#    queries and Econome's InfluxQL reads work on 2.x as on 1.x;
#  - creates two least-privilege tokens in the shared volume /run/influx-tokens:
#    econome.token (read + write the bucket) and grafana.token (read only).
#
# Who runs it: the influxdb:2.7 image's entrypoint runs /docker-entrypoint-initdb.d as root
# (its init step comes before `exec gosu influxdb`); the tokens are then written by root,
# readable by every uid (Econome 10001, Grafana 472) in a folder they can enter. Any other
# user who can write INFLUX_TOKENS_DIR may run it too (bare VM: OPERATIONS.md, "Bare VM").
# Variables: DOCKER_INFLUXDB_INIT_ORG and DOCKER_INFLUXDB_INIT_BUCKET (required, set by
# compose), ECONOME_INFLUX_DATABASE (default econome), INFLUX_TOKENS_DIR (default
# /run/influx-tokens); outside the image also INFLUX_HOST and INFLUX_TOKEN for the influx CLI.
set -euo pipefail

org="${DOCKER_INFLUXDB_INIT_ORG:?set DOCKER_INFLUXDB_INIT_ORG to the InfluxDB organisation}"
bucket="${DOCKER_INFLUXDB_INIT_BUCKET:?set DOCKER_INFLUXDB_INIT_BUCKET to the bucket of the readings}"
database="${ECONOME_INFLUX_DATABASE:-econome}"
tokens="${INFLUX_TOKENS_DIR:-/run/influx-tokens}"   # the influx-tokens volume

bucket_id="$(influx bucket list --org "$org" --name "$bucket" --hide-headers | awk '{print $1}')"
if [ -z "$bucket_id" ]; then
    echo "econome init: bucket $bucket not found in org $org" >&2
    exit 1
fi

if ! influx v1 dbrp list --org "$org" --db "$database" --hide-headers | grep -q "$bucket_id"; then
    influx v1 dbrp create --org "$org" --db "$database" --rp autogen --bucket-id "$bucket_id" --default
fi

token_of() {
    sed -n 's/.*"token": *"\([^"]*\)".*/\1/p'
}

# Readers (Econome, Grafana) enter the folder and those above it; only its owner writes there.
(umask 022 && mkdir -p -m 0755 "$tokens")
umask 077
if [ ! -w "$tokens" ]; then
    echo "econome init: $tokens is not writable by $(id -un 2>/dev/null || id -u) (uid $(id -u)); run as root or chown it to that user" >&2
    exit 1
fi
if [ ! -s "$tokens/econome.token" ]; then
    influx auth create --org "$org" --description "econome writer" \
        --read-bucket "$bucket_id" --write-bucket "$bucket_id" --json | token_of > "$tokens/econome.token"
fi
if [ ! -s "$tokens/grafana.token" ]; then
    influx auth create --org "$org" --description "grafana reader" \
        --read-bucket "$bucket_id" --json | token_of > "$tokens/grafana.token"
fi
# Grafana and Econome run as other users: they read, nobody else writes.
chmod 0444 "$tokens"/*.token
echo "econome init: DBRP $database -> $bucket ($bucket_id), tokens in $tokens"
