"""One Sparkplug B source of a line description: the broker, the group, which edge nodes and devices, and how their
metrics map onto the twin's stations and signals.

A metric's path for the ``signals`` rules is ``<edge_node>/<device>/<metric name>``, with ``-`` as the device of an
edge node's own metrics. Sparkplug metric names are folders themselves (``Monitoring/WetFilmThickness``), so a rule
that takes a whole device is written with ``**`` (``"Coater01/Head/**"``); ``*`` stops at a ``/``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.settings import MqttConfig, SignalRule

#: Sparkplug B forbids these in group, edge node and device ids (they are MQTT topic levels).
_ID_FORBIDDEN = re.compile(r"[/+#]")


def _check_id(v: str, what: str) -> str:
    v = v.strip()
    if not v or _ID_FORBIDDEN.search(v):
        raise ValueError(f"{what} {v!r} must be non-empty and contain none of / + # (it is an MQTT topic level)")
    return v


class SparkplugSource(BaseModel):
    """A Sparkplug B group (or some of its edge nodes) the twin reads as a host application."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    mqtt: MqttConfig = Field(
        default_factory=MqttConfig,
        description="Broker link: url, username/password, tls, keepalive_s, max_inflight, reconnect_min_s / "
                    "reconnect_max_s (connectors/settings.py). client_id defaults to \"pilotline-twin-spb-<group_id>\" "
                    "when not given; clean_session is always true (Sparkplug hosts start clean and ask for births); "
                    "enabled, topics, qos and sparkplug are not used here (a source in the list is read)")
    group_id: str = Field(description="The Sparkplug group id (the topic level after spBv1.0/)")
    edge_nodes: list[str] = Field(
        default=[], description="Edge node ids to read; empty = every edge node of the group")
    devices: list[str] = Field(
        default=[], description="Device ids to read (edge nodes' own metrics are always read); empty = every device")
    host_id: str = Field(
        default="", description="Primary host id: when set, the twin publishes the Sparkplug 3.0 STATE message "
                                "(retained spBv1.0/STATE/<host_id> {\"online\": true, \"timestamp\": ms}, with a will "
                                "of online=false) so edge nodes configured for this primary host publish; empty = the "
                                "twin is a secondary host and publishes no STATE")
    rebirth_throttle_s: float = Field(
        default=1.0, ge=0, description="Least time between two rebirth requests (NCMD Node Control/Rebirth) to one "
                                       "edge node, s (benthos-umh's birth_request_throttle)")
    signals: list[SignalRule] = Field(
        default=[], description="Mapping rules, first match wins: the metric path \"<edge_node>/<device or ->/<metric "
                                "name>\" -> the twin's station, signal, unit, range (connectors/mapping.py)")
    unmapped: Literal["ignore", "derive"] = Field(
        default="ignore", description="Metrics no signals rule maps: ignore (dropped and counted) | derive (station "
                                      "<edge_node> or <edge_node>/<device>, signal = the metric name with . for /)")

    @field_validator("group_id")
    @classmethod
    def _group(cls, v: str) -> str:
        return _check_id(v, "group_id")

    @field_validator("edge_nodes", "devices")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        return [_check_id(x, "edge node / device id") for x in v]

    @field_validator("host_id")
    @classmethod
    def _host(cls, v: str) -> str:
        return _check_id(v, "host_id") if v.strip() else ""

    @model_validator(mode="after")
    def _client_id(self) -> SparkplugSource:
        # the MQTT JSON connector's default client id would make the two kick each other off the broker
        if "client_id" not in self.mqtt.model_fields_set:
            self.mqtt = self.mqtt.model_copy(update={"client_id": f"pilotline-twin-spb-{self.group_id}"})
        return self
