"""The line description: one YAML file that maps any OPC UA / MQTT / Sparkplug B line onto the whole twin.

``description.py`` is its schema, ``load.py`` reads it (errors name the key and the line in the file), ``apply.py``
turns it into the configuration sections the connectors and the twin's services read. The bundled simulator is one
line among others: ``deploy/lines/simulator.yaml``.
"""

from twin.line.description import Equipment, LineDescription, Sources, WorkUnit
from twin.line.load import LineDescriptionError, load_line

__all__ = ["Equipment", "LineDescription", "LineDescriptionError", "Sources", "WorkUnit", "load_line"]
