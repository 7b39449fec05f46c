#!/bin/sh
# Writes the hashed password file from the environment; run once before mosquitto starts (compose: mosquitto-init).
set -eu
: "${MQTT_TWIN_PASSWORD:?set MQTT_TWIN_PASSWORD}" "${MQTT_SIMULATOR_PASSWORD:?set MQTT_SIMULATOR_PASSWORD}"
cp /config-src/mosquitto.conf /config-src/acl /mosquitto/config/
rm -f /mosquitto/config/passwd
mosquitto_passwd -b -c /mosquitto/config/passwd twin "$MQTT_TWIN_PASSWORD"
mosquitto_passwd -b /mosquitto/config/passwd simulator "$MQTT_SIMULATOR_PASSWORD"
chmod 0600 /mosquitto/config/passwd /mosquitto/config/acl
chown mosquitto:mosquitto /mosquitto/config/passwd /mosquitto/config/acl 2>/dev/null || true
