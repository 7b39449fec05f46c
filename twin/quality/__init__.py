"""The quality engineer's twin: what the line did to the material in a cell, offline lab results, and root cause.

A folder by job (docs/quality.md shows the API and the documents):

- ``influx.py``: a small synchronous InfluxDB reader / writer with a row cap and a timeout, for worker threads;
- ``stats.py``: summary statistics (mean, min, max, std, n, Cpk) and how two of them pool;
- ``record.py``: the cell record (genealogy + per-material process statistics + formation, predictions, lab, audit)
  and its feature vector; ``jsonld.py`` its BattINFO-typed JSON-LD; ``dataset.py`` the export for many cells;
- ``lab.py``: lab and offline measurements keyed by a trace ID, validated and quarantined like line data;
- ``rootcause.py``: which upstream features separate a set of cells from the rest.

Everything here is blocking code meant to run in a worker thread (the API wraps each call in ``asyncio.to_thread``
with a deadline): it reads the genealogy store and InfluxDB and never touches the event loop.
"""
