"""The quality side of the running twin: cell records, dataset exports, lab imports and root cause, each run in a
worker thread under a deadline and a concurrency cap (ontology.limits.QueryGate, as user SPARQL), never on the
event loop. The API (twin/api/quality.py) and the CLI (``python -m twin cell-record``, ``lab import``) use it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from twin.quality.dataset import DatasetBuilder
from twin.quality.influx import InfluxReader
from twin.quality.lab import ImportResult, LabImporter
from twin.quality.record import CellRecords
from twin.quality.rootcause import rank, select
from twin.quality.settings import QualitySettings

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def __call__(self) -> None:
        if time.monotonic() > self.end:
            raise TimeoutError(f"past the deadline of {self.seconds:g} s")


OUTCOMES_QUERY = """PREFIX pl: <https://pilotline.example.org/vocab#>
PREFIX emmo: <https://w3id.org/emmo#>
PREFIX rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#>
SELECT ?id ?line ?key ?num ?text WHERE {
  ?run a pl:FormationRun ; pl:hasInput ?cell .
  ?cell a pl:Cell ; pl:traceId ?id ; pl:line ?line .
  ?run pl:hasMeasured ?q . ?q pl:key ?key .
  FILTER(?key IN ("passed", "aborted", "%s"))
  OPTIONAL { ?q emmo:EMMO_8ef3cd6d_ae58_4a8d_9fc0_ad8f49015cd0 ?n .
             ?n emmo:EMMO_faf79f53_749d_40b2_807c_d34244c192f4 ?num }
  OPTIONAL { ?q rdf:value ?text }
}"""


class QualityService:
    def __init__(self, store: Any, influx: InfluxReader | None, specs: Mapping[str, Any], line: str,
                 settings: QualitySettings | None = None) -> None:
        self.settings = settings or QualitySettings()
        if not KEY_RE.fullmatch(self.settings.capacity_key):
            raise ValueError(f"quality.capacity_key {self.settings.capacity_key!r} must match {KEY_RE.pattern}")
        self.store = store
        self.influx = influx
        self.line = line
        self.records = CellRecords(store, influx, specs)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], store: Any, specs: Mapping[str, Any], line: str,
                    settings: QualitySettings | None = None) -> QualityService:
        s = settings or QualitySettings()
        influx = InfluxReader.from_config(cfg["influx"], timeout_s=s.query_timeout_s, max_rows=s.max_rows) \
            if cfg.get("influx") else None
        return cls(store, influx, specs, line, s)

    def close(self) -> None:
        if self.influx is not None:
            self.influx.close()

    # -- the four jobs (blocking: call from a worker thread) -----------------------------------------------------
    def record(self, cell_id: str, line: str | None = None) -> dict[str, Any]:
        return self.records.record(cell_id, line)

    def outcomes(self, limit: int) -> dict[str, dict[str, float]]:
        """Formation outcomes (passed, aborted, capacity) of the formed cells of this line, newest IDs first."""
        answer = self.store.sparql(OUTCOMES_QUERY % self.settings.capacity_key, max_results=3 * limit + 3 * 1000,
                                   timeout_s=self.settings.dataset_timeout_s)
        out: dict[str, dict[str, float]] = {}
        for b in (answer.json or {}).get("results", {}).get("bindings", []):
            if b["line"]["value"] != self.line:
                continue
            raw = (b.get("num") or b.get("text") or {}).get("value")
            if raw is None:
                continue
            v = 1.0 if raw == "true" else 0.0 if raw == "false" else float(raw)
            key = b["key"]["value"]
            out.setdefault(b["id"]["value"], {})[f"formation:{key}"] = v
        newest = sorted(out, reverse=True)[:limit]
        return {c: out[c] for c in newest}

    def selection(self, *, cells: Sequence[str] | None = None, formation_failed: bool = False,
                  capacity_below: float | None = None, max_cells: int | None = None) -> list[str]:
        """The cells a dataset export is about: the list given, or the formed cells matching the condition."""
        limit = min(max_cells or self.settings.dataset_max_cells, self.settings.dataset_max_cells)
        if cells:
            if len(cells) > limit:
                raise ValueError(f"{len(cells)} cells is more than {limit} (quality.dataset_max_cells)")
            return list(cells)
        outcomes = self.outcomes(limit)
        ids = list(outcomes)
        sel = select([outcomes[c] for c in ids], ids, formation_failed=formation_failed,
                     capacity_below=capacity_below, capacity_key=f"formation:{self.settings.capacity_key}")
        return [c for c, s in zip(ids, sel, strict=True) if s]

    def dataset(self, cell_ids: Sequence[str], deadline: Deadline | None = None
                ) -> list[tuple[str, dict[str, float]]]:
        builder = DatasetBuilder(self.records, max_cells=self.settings.dataset_max_cells, deadline=deadline)
        return builder.features(cell_ids, self.line)

    def rootcause(self, *, cells: Sequence[str] | None = None, formation_failed: bool = False,
                  capacity_below: float | None = None, max_cells: int | None = None, top: int = 10,
                  deadline: Deadline | None = None) -> dict[str, Any]:
        limit = min(max_cells or self.settings.dataset_max_cells, self.settings.dataset_max_cells)
        outcomes = self.outcomes(limit)
        universe = list(outcomes)
        if cells:
            missing = sorted(set(cells) - set(universe))
            universe += missing  # given cells not formed (yet) still count as selected
        rows = self.dataset(universe, deadline)
        ids = [c for c, _ in rows]
        feats = [f for _, f in rows]
        sel = select(feats, ids, formation_failed=formation_failed, capacity_below=capacity_below,
                     capacity_key=f"formation:{self.settings.capacity_key}", given=cells)
        out = rank(ids, feats, sel, top=top)
        out["selection"] = {"cells": list(cells) if cells else None, "formation_failed": formation_failed,
                            "capacity_below": capacity_below, "universe": "formed cells of the line, newest "
                            f"{limit} by ID"}
        out["selected_cells"] = [c for c, s in zip(ids, sel, strict=True) if s][:1000]
        return out

    def lab_import(self, rows: Sequence[Mapping[str, Any]], source: str) -> ImportResult:
        if self.influx is None:
            raise RuntimeError("no InfluxDB configured: lab results are stored there (influx: in the config)")
        importer = LabImporter(self.store, self.influx, self.line, max_rows=self.settings.lab_max_rows)
        return importer.import_rows(rows, source)
