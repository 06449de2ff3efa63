#!/usr/bin/env bash
# Create the secrets the compose stack reads, in deploy/secrets/ (mode 600, never committed).
# Safe to re-run: an existing secret is kept. Needs openssl, and mosquitto_passwd
# (Debian: apt install mosquitto-clients... or mosquitto) or Docker to hash the MQTT passwords.
#
#   MQTT_HOSTNAME=mqtt.mairie.example ./init-secrets.sh
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets/tls

random() { openssl rand -base64 33 | tr -d '/+=\n' | cut -c1-32; }
keep_or_make() { [ -s "secrets/$1" ] || random > "secrets/$1"; }

keep_or_make influxdb_admin_password
keep_or_make influxdb_admin_token
keep_or_make grafana_admin_password
keep_or_make mqtt_econome_password
# The SMTP relay's password is not ours to invent: an empty file until the operator writes it.
[ -e secrets/smtp_password ] || : > secrets/smtp_password
# Likewise the Enedis Data Connect and GRDF ADICT client secrets (DataHub, GRDF's API portal).
[ -e secrets/enedis_client_secret ] || : > secrets/enedis_client_secret
[ -e secrets/grdf_client_secret ] || : > secrets/grdf_client_secret

# Mosquitto password file: one line per MQTT user of mosquitto/acl.
if [ ! -s secrets/mosquitto_passwd ]; then
    : > secrets/mosquitto_passwd
    hash() {
        if command -v mosquitto_passwd >/dev/null 2>&1; then
            mosquitto_passwd -b secrets/mosquitto_passwd "$1" "$2"
        else
            docker run --rm -v "$PWD/secrets:/s" eclipse-mosquitto:2.0.20 mosquitto_passwd -b /s/mosquitto_passwd "$1" "$2"
        fi
    }
    hash econome "$(cat secrets/mqtt_econome_password)"
    for user in zigbee2mqtt chirpstack; do
        keep_or_make "mqtt_${user}_password"
        hash "$user" "$(cat "secrets/mqtt_${user}_password")"
    done
fi

# TLS for Mosquitto: a private CA for the commune's LAN, and the broker's certificate.
host="${MQTT_HOSTNAME:-mqtt.local}"
if [ ! -s secrets/tls/server.crt ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=Econome MQTT CA" \
        -keyout secrets/tls/ca.key -out secrets/tls/ca.crt
    openssl req -newkey rsa:3072 -nodes -subj "/CN=$host" -keyout secrets/tls/server.key -out secrets/tls/server.csr
    printf 'subjectAltName=DNS:%s,DNS:mosquitto\n' "$host" > secrets/tls/san.ext
    openssl x509 -req -in secrets/tls/server.csr -CA secrets/tls/ca.crt -CAkey secrets/tls/ca.key -CAcreateserial \
        -days 825 -extfile secrets/tls/san.ext -out secrets/tls/server.crt
    rm -f secrets/tls/server.csr secrets/tls/san.ext
fi
# Compose hands a secret file to its container as it is on this host (a bind mount): each one
# must belong to the uid its container runs as, or the service cannot read it (mode 600).
# Mosquitto runs as 1883, InfluxDB's image as influxdb (1000), Grafana's as 472, and
# Econome's image as econome (10001, deploy/Dockerfile).
MOSQUITTO_UID="${MOSQUITTO_UID:-1883}"
INFLUXDB_UID="${INFLUXDB_UID:-1000}"
GRAFANA_UID="${GRAFANA_UID:-472}"
ECONOME_UID="${ECONOME_UID:-10001}"
chmod 0644 secrets/tls/ca.crt secrets/tls/server.crt
chmod 0600 secrets/tls/server.key secrets/mosquitto_passwd secrets/influxdb_admin_password \
    secrets/influxdb_admin_token secrets/grafana_admin_password secrets/mqtt_econome_password secrets/smtp_password \
    secrets/enedis_client_secret secrets/grdf_client_secret
owners=(
    "$MOSQUITTO_UID secrets/tls/server.key secrets/mosquitto_passwd"
    "$INFLUXDB_UID secrets/influxdb_admin_password secrets/influxdb_admin_token"
    "$GRAFANA_UID secrets/grafana_admin_password"
    "$ECONOME_UID secrets/mqtt_econome_password secrets/smtp_password secrets/enedis_client_secret secrets/grdf_client_secret"
)
for line in "${owners[@]}"; do
    read -r uid files <<< "$line"
    if [ "$(id -u)" -eq 0 ]; then
        # shellcheck disable=SC2086  # a list of paths without spaces
        chown "$uid:$uid" $files
    else
        echo "run as root, or: sudo chown $uid:$uid $files" >&2
    fi
done
echo "secrets ready in $(pwd)/secrets; give secrets/tls/ca.crt to the MQTT clients"
