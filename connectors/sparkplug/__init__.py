"""Sparkplug B host-side source: ``SparkplugSource`` (one group of a line description) and ``SparkplugConnector``."""

from connectors.sparkplug.connector import SparkplugConnector, SparkplugStatus
from connectors.sparkplug.settings import SparkplugSource

__all__ = ["SparkplugConnector", "SparkplugSource", "SparkplugStatus"]
