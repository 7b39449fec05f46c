"""Predictions for each roll segment and each cell, from the trace events: structure, then performance and cost.

Why from trace events: they say which material a prediction is about (segment, cell), with the parameters of the
step that made it, so every prediction attaches to a node of the genealogy graph. A cell's electrodes are found by
walking the events' inputs back (cell -> stack -> sheets -> slit coil -> calendered roll -> coated roll) and taking
the segment predictions of the roll stretch the sheets were cut from. The walk is the genealogy's
(``ontology.lineage.Lineage``, kept by the genealogy store and passed in as ``lineage``); without a genealogy the
predictor keeps a ``Lineage`` of its own and feeds it every event.

Structure comes from the plant model (process-chain physics, or its ONNX surrogate through ``models.runtime``);
performance and cost from the registry's surrogates when ``predict.performance_model`` / ``cost_model`` name them.
Without them the cell prediction is the cathode-limited capacity of the reference pouch (areal capacity x coated
cathode area, ``models.cell_format``), labelled as such. Every prediction carries its model version, domain check
and uncertainty (the surrogate's std; 0 for the physics, which is exact for its own inputs).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from contract.records import TraceEvent
from models.cell_format import REFERENCE_POUCH
from ontology.lineage import Lineage
from twin.plant_model import PlantModel, RegistryModel
from twin.service_settings import PredictSettings
from twin.store.lineproto import string_field, tag_value

log = logging.getLogger("twin.predict")

Prediction = dict[str, Any]
Sink = Callable[[Prediction], None]
LatestFn = Callable[[str], float | None]

STRUCTURE_OUTPUTS = (
    "drying.dry_mass_loading_mg_cm2", "drying.dry_porosity", "drying.dry_film_thickness_um",
    "calendering.calendered_porosity", "calendering.calendered_thickness_um", "calendering.calendered_density_g_cm3",
    "calendering.active_volume_fraction", "calendering.areal_capacity_mAh_cm2",
)
ROLL_PARAMS = ("pump_flow_rate_cm3_h", "web_speed_m_min", "coating_width_mm", "solid_content")


class Predictor:
    def __init__(self, settings: PredictSettings, line: str, model: PlantModel, latest: LatestFn,
                 registry: Any = None, sinks: list[Sink] | None = None,
                 observe_latency: Callable[[str, float], None] | None = None,
                 lineage: Lineage | None = None) -> None:
        self.settings = settings
        self.line = line
        self.model = model
        self.latest = latest
        self.registry = registry
        self.sinks = list(sinks or [])
        # the genealogy store's lineage, fed by its add_event before the event reaches on_event; else our own
        self.lineage = lineage if lineage is not None else Lineage()
        self._feeds_lineage = lineage is None
        self.segments: dict[str, list[tuple[float, float, Prediction]]] = {}
        self.observe = observe_latency or (lambda name, s: None)
        self.counts = {"segment": 0, "cell": 0, "errors": 0, "out_of_domain": 0}
        self.edge_tolerance = 0.02
        self._recipes: dict[str, dict[str, float]] = {}

    # -- events -------------------------------------------------------------------------------------------------------
    def on_event(self, ev: TraceEvent) -> list[Prediction]:
        """Feed every trace event (after the genealogy's add_event, when the lineage is the genealogy's); returns the
        predictions it produced."""
        if self._feeds_lineage:
            self.lineage.add(ev)
        if ev.kind != "created" or not self.settings.enabled:
            return []
        try:
            if ev.type == "RollSegment":
                return [self._segment(ev)]
            if ev.type == "CoatedRoll":
                return self._roll(ev)
            if ev.type == "Cell":
                return self._cell(ev)
        except Exception:  # noqa: BLE001 - a prediction failure must not stop the twin; counted and logged
            self.counts["errors"] += 1
            log.exception("prediction for %s failed", ev.id)
        return []

    def _lane(self, entity: str) -> tuple[str, str]:
        return ("Cathode", "cathode") if "-C-" in entity else ("Anode", "anode")

    def _roll(self, ev: TraceEvent) -> list[Prediction]:
        """A line whose MES books whole coated rolls and no segments: the roll is its own one segment, from the
        roll's booked parameters (replaced by segment predictions as soon as any arrive for that roll)."""
        length = ev.properties.get("length_m")
        if ev.id in self.segments or not isinstance(length, int | float) or not length > 0:
            return []
        params = {k: float(v) for k, v in ev.parameters.items()
                  if k in ROLL_PARAMS and isinstance(v, int | float) and not isinstance(v, bool)}
        if "pump_flow_rate_cm3_h" not in params:
            return []
        lane, electrode = self._lane(ev.id)
        pred = self._structure(ev.id, "CoatedRoll", electrode, self._with_calender(lane, electrode, params))
        measured = ev.properties.get("mass_loading_mg_cm2_mean")
        if isinstance(measured, int | float) and math.isfinite(measured):
            pred["measured"] = {"drying.dry_mass_loading_mg_cm2": float(measured)}
        pred["whole_roll"] = True
        self.segments[ev.id] = [(0.0, float(length), pred)]
        self.counts["segment"] += 1
        self._emit(pred)
        return [pred]

    def _with_calender(self, lane: str, electrode: str, inputs: dict[str, float]) -> dict[str, float]:
        """The calender's measured inputs (latest values), clamped to the model's domain within the edge tolerance."""
        inputs = dict(inputs)
        domain = self.model.domain(electrode)
        for name, signal in (("line_load_N_mm", f"Calendering/{lane}/LineLoad"),
                             ("roll_temperature_C", f"Calendering/{lane}/RollTemperature")):
            v = self.latest(signal)
            if v is not None:
                # a measured value within the edge tolerance outside the domain is sensor noise at its edge
                rng = domain.get(name)
                if rng is not None:
                    edge = self.edge_tolerance * (rng[1] - rng[0])
                    if rng[0] - edge <= v < rng[0] or rng[1] < v <= rng[1] + edge:
                        v = min(max(v, rng[0]), rng[1])
                inputs[name] = v
        return inputs

    def _segment(self, ev: TraceEvent) -> Prediction:
        seg = ev.id
        lane, electrode = self._lane(seg)
        src = ev.inputs[0] if ev.inputs else None
        roll, a, b = (src.id, src.from_m, src.to_m) if src is not None else ("", None, None)
        roll_params = self.lineage.parameters(ev.line, roll)
        inputs: dict[str, float] = {k: roll_params[k] for k in ROLL_PARAMS if k in roll_params}
        pred = self._structure(seg, "RollSegment", electrode, self._with_calender(lane, electrode, inputs))
        measured = ev.properties.get("mass_loading_mg_cm2_mean")
        if isinstance(measured, (int, float)) and math.isfinite(measured):
            pred["measured"] = {"drying.dry_mass_loading_mg_cm2": float(measured)}
        if roll and a is not None and b is not None:
            kept = [x for x in self.segments.get(roll, []) if not x[2].get("whole_roll")]
            self.segments[roll] = [*kept, (float(a), float(b), pred)]
            if len(self.segments) > 500:
                self.segments.pop(next(iter(self.segments)))
        self.counts["segment"] += 1
        self._emit(pred)
        return pred

    def _structure(self, subject: str, subject_type: str, electrode: str, inputs: dict[str, float]) -> Prediction:
        t0 = time.perf_counter()
        violations = self.model.check_domain(inputs, electrode)
        answer = self.model.evaluate(electrode, inputs)
        self.observe(self.model.version, time.perf_counter() - t0)
        outputs = {k: float(np.asarray(answer.outputs[k]).reshape(-1)[0]) for k in STRUCTURE_OUTPUTS
                   if k in answer.outputs}
        std = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in answer.std.items() if k in outputs}
        violations += list(answer.violations)
        if answer.in_domain is not None and not bool(np.all(answer.in_domain)) and not violations:
            violations.append("outside the model's domain")
        if violations:
            self.counts["out_of_domain"] += 1
        return {"time_ns": time.time_ns(), "line": self.line, "subject": subject, "subject_type": subject_type,
                "kind": "structure", "electrode": electrode, "outputs": outputs, "std": std,
                "in_domain": not violations, "violations": violations, "model_version": answer.model_version,
                "inputs": inputs}

    def _electrode_structure(self, line: str, cell: str, prefix: str) -> Prediction | None:
        """The mean segment prediction over the roll stretches of ``cell`` on the lane with roll prefix ``prefix``."""
        preds: list[Prediction] = []
        for roll, a, b in self.lineage.coated_stretches(line, cell):
            if not roll.startswith(prefix):
                continue
            for sa, sb, p in self.segments.get(roll, []):
                if a is None or b is None or (sa < b and sb > a):
                    preds.append(p)
        if not preds:
            return None
        keys = preds[0]["outputs"].keys()
        mean = {k: float(np.mean([p["outputs"][k] for p in preds])) for k in keys}
        return {**preds[0], "outputs": mean, "segments": [p["subject"] for p in preds],
                "in_domain": all(p["in_domain"] for p in preds)}

    def _cell(self, ev: TraceEvent) -> list[Prediction]:
        cell = ev.id
        cathode = self._electrode_structure(ev.line, cell, "CR-C-")
        anode = self._electrode_structure(ev.line, cell, "CR-A-")
        if cathode is None:
            return []
        base = {"time_ns": time.time_ns(), "line": self.line, "subject": cell, "subject_type": "Cell",
                "inputs": {"cathode_segments": cathode.get("segments", []),
                           "anode_segments": (anode or {}).get("segments", [])}}
        out: list[Prediction] = []
        flat: dict[str, float] = {f"cathode_{k}": v for k, v in cathode["inputs"].items()}
        if anode is not None:
            flat.update({f"anode_{k}": v for k, v in anode["inputs"].items()})
        predict_raw = getattr(self.model, "predict_raw", None)
        if predict_raw is not None:
            # the structure surrogate takes both electrodes at once and adds the cell's N/P ratio
            t0 = time.perf_counter()
            res = predict_raw({"cathode": cathode["inputs"], **({"anode": anode["inputs"]} if anode else {})})
            self.observe(self.model.version, time.perf_counter() - t0)
            outputs = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in res.outputs.items()}
            std = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in res.std.items()}
            violations = sorted({f"{k}: {v}" for row in res.violations for k, v in row.items()})
            in_domain = bool(np.all(res.in_domain))
            version = f"{self.model.version.split('@')[0]}@{res.model_version}"
            flat.update(outputs)
        else:
            outputs = {f"cathode_{k.split('.', 1)[1]}": v for k, v in cathode["outputs"].items()}
            if anode is not None:
                outputs.update({f"anode_{k.split('.', 1)[1]}": v for k, v in anode["outputs"].items()})
                cap_c = cathode["outputs"].get("calendering.areal_capacity_mAh_cm2", math.nan)
                outputs["np_ratio"] = anode["outputs"].get("calendering.areal_capacity_mAh_cm2", math.nan) / cap_c
            std, violations = {}, []
            in_domain = cathode["in_domain"] and (anode is None or anode["in_domain"])
            version = cathode["model_version"]
        # cathode-limited capacity of the reference pouch (models.cell_format): areal capacity x coated area
        cap = outputs.get("cathode_areal_capacity_mAh_cm2")
        if cap is not None:
            outputs["capacity_Ah_cathode_limited"] = cap * REFERENCE_POUCH.cathode_area_cm2 / 1000.0
            if "cathode_areal_capacity_mAh_cm2" in std:
                std["capacity_Ah_cathode_limited"] = (std["cathode_areal_capacity_mAh_cm2"]
                                                      * REFERENCE_POUCH.cathode_area_cm2 / 1000.0)
        out.append({**base, "kind": "structure", "outputs": outputs, "std": std, "in_domain": in_domain,
                    "violations": violations, "model_version": version})
        flat.update({"c_rate": self.settings.operating_c_rate, "oee": self.settings.oee,
                     "cell_yield": self.settings.cell_yield})
        dew_point = self.latest(self.settings.dew_point_signal)
        if dew_point is not None:
            flat["dew_point_C"] = dew_point
        for kind, name in (("performance", self.settings.performance_model), ("cost", self.settings.cost_model)):
            if self.registry is None or not name or name not in getattr(self.registry, "names", []):
                continue
            try:
                # what the line does not measure per cell (formulation, particle size) is the recipe: the
                # process-chain parameter set the surrogate was trained around
                out.append({**base, "kind": kind, **self._registry(name, {**self._recipe(name), **flat})})
            except (KeyError, ValueError) as exc:
                log.warning("%s model %s cannot predict cell %s: %s", kind, name, cell, exc)
        self.counts["cell"] += 1
        for p in out:
            self._emit(p)
        return out

    def _recipe(self, name: str) -> dict[str, float]:
        if name not in self._recipes:
            self._recipes[name] = RegistryModel(self.registry, name).defaults()
        return self._recipes[name]

    def _registry(self, name: str, inputs: Mapping[str, float]) -> dict[str, Any]:
        t0 = time.perf_counter()
        res = self.registry.predict(name, inputs)
        self.observe(name, time.perf_counter() - t0)
        return {"outputs": {k: float(np.asarray(v).reshape(-1)[0]) for k, v in dict(res.outputs).items()},
                "std": {k: float(np.asarray(v).reshape(-1)[0]) for k, v in dict(res.std or {}).items()},
                "in_domain": bool(np.all(res.in_domain)),
                "violations": sorted({f"{k}: {v}" for row in res.violations for k, v in row.items()}),
                "model_version": f"{name}@{res.model_version}"}

    def _emit(self, pred: Prediction) -> None:
        for sink in self.sinks:
            try:
                sink(pred)
            except Exception:  # noqa: BLE001 - one failing sink (graph, database) must not drop the others
                self.counts["errors"] += 1
                log.exception("prediction sink %r failed", sink)


def prediction_lines(pred: Prediction) -> str:
    """InfluxDB lines for one prediction: measurement ``twin_predictions``, one point per output.

    Tags: line, kind, subject_type, output, model (bounded); fields: value, std, in_domain, subject (unbounded id).
    """

    lines = []
    for i, (name, value) in enumerate(sorted(pred["outputs"].items())):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        sd = pred.get("std", {}).get(name)
        fields = [f"value={float(value)!r}", f"in_domain={'true' if pred['in_domain'] else 'false'}",
                  f"subject={string_field(pred['subject'])}"]
        if isinstance(sd, (int, float)) and math.isfinite(sd):
            fields.append(f"std={float(sd)!r}")
        tags = (f"twin_predictions,line={tag_value(pred['line'])},kind={tag_value(pred['kind'])},"
                f"subject_type={tag_value(pred['subject_type'])},output={tag_value(name)},model={tag_value(pred['model_version'])}")
        # distinct timestamps per subject so two subjects predicted in the same ns never overwrite each other
        lines.append(f"{tags} {','.join(fields)} {pred['time_ns'] + i}")
    return "\n".join(lines)
