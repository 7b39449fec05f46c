"""The twin's calibration: roll records in, estimates per line / product / electrode, versions, alarms, audit.

Which electrode a record belongs to comes from the line description, not from ID patterns: a record's station is the
station of one of the product's loop signals (``Coating/<lane>/PumpFlowRate`` -> station ``Coating/<lane>``), and
that loop names its electrode. A coated roll's record is kept (its coating inputs) until the calender reports the
roll, so the calendered observation is evaluated on the coating that roll was made with.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract.records import TraceEvent
from twin.alarms import AlarmManager
from twin.audit import AuditLog
from twin.calibration.estimator import (
    CALENDER_INPUTS,
    CALENDER_OBSERVED,
    COATING_INPUTS,
    COATING_OBSERVED,
    ElectrodeCalibration,
    Observation,
    ObserveResult,
    Settings,
    Version,
)
from twin.service_settings import CalibrationSettings, ControlSettings

log = logging.getLogger("twin.calibration")
KEEP_ROLLS = 200  # coated rolls remembered until their calendered record arrives


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


class Calibration:
    def __init__(self, settings: CalibrationSettings, line: str, control: ControlSettings,
                 audit: AuditLog | None = None, alarms: AlarmManager | None = None,
                 product: Callable[[], str] | None = None) -> None:
        self.settings = settings
        self.line = line
        self.control = control
        self.audit = audit
        self.alarms = alarms
        self._product = product or (lambda: control.product)
        self.est = Settings(rel_std=settings.rel_std, cusum_k=settings.cusum_k, cusum_h=settings.cusum_h,
                            walk_scale=settings.walk_scale)
        self.calibrations: dict[str, ElectrodeCalibration] = {}
        self.coated: OrderedDict[str, tuple[str, dict[str, float]]] = OrderedDict()  # roll -> (electrode, inputs)
        self.batches: dict[str, OrderedDict[str, None]] = {}  # electrode -> slurry batches its records named
        self.counts = {"observations": 0, "ignored": 0, "errors": 0, "accepted": 0, "mismatches": 0}
        self.update_s: list[float] = []
        self._lock = threading.Lock()
        self._load()

    # -- keys ---------------------------------------------------------------------------------------------------------
    @property
    def product(self) -> str:
        return self._product()

    def electrode_of(self, station: str) -> str | None:
        product = self.control.products.get(self.product)
        if product is None:
            return None
        for loop in product.loops.values():
            signals = [t.signal for t in loop.targets] + [m.actual_signal for m in loop.manipulated] + [
                mi.signal for mi in loop.measured_inputs]
            if any(sig.rsplit("/", 1)[0] == station for sig in signals):
                return loop.electrode
        return None

    def get(self, electrode: str, product: str | None = None) -> ElectrodeCalibration:
        product = product or self.product
        key = f"{self.line}/{product}/{electrode}"
        cal = self.calibrations.get(key)
        if cal is None:
            cal = self.calibrations[key] = ElectrodeCalibration(self.line, product, electrode, self.est)
        return cal

    def accepted(self, electrode: str) -> Version | None:
        """The accepted version for the current product, None while it is still the literature one."""
        cal = self.calibrations.get(f"{self.line}/{self.product}/{electrode}")
        return None if cal is None or cal.accepted == 0 else cal.current()

    # -- records ------------------------------------------------------------------------------------------------------
    def on_event(self, ev: TraceEvent) -> ObserveResult | None:
        if not self.settings.enabled or ev.kind != "created" or ev.type not in ("CoatedRoll", "CalenderedRoll"):
            return None
        try:
            with self._lock:
                return self._on_event(ev)
        except Exception:  # noqa: BLE001 - a calibration failure must not stop the twin; counted and logged
            self.counts["errors"] += 1
            log.exception("calibration on %s failed", ev.id)
            return None

    def _on_event(self, ev: TraceEvent) -> ObserveResult | None:
        electrode = self.electrode_of(ev.station)
        if electrode is None:
            self.counts["ignored"] += 1
            return None
        if ev.type == "CoatedRoll":
            inputs = {k: _number(ev.parameters.get(k)) for k in COATING_INPUTS}
            if any(v is None for v in inputs.values()):
                self.counts["ignored"] += 1
                return None
            coating = {k: float(v) for k, v in inputs.items() if v is not None}
            seen = self.batches.setdefault(electrode, OrderedDict())
            batches = [i.id for i in ev.inputs if i.type == "SlurryBatch"]
            new_batch = bool(seen) and any(b not in seen for b in batches)
            for b in batches:
                seen[b] = None
            while len(seen) > KEEP_ROLLS:
                seen.popitem(last=False)
            self.coated[ev.id] = (electrode, coating)
            while len(self.coated) > KEEP_ROLLS:
                self.coated.popitem(last=False)
            observed = COATING_OBSERVED
        else:
            source = next((i.id for i in ev.inputs if i.type == "CoatedRoll"), None)
            known = self.coated.pop(source, None) if source else None
            calender = {k: _number(ev.parameters.get(k)) for k in CALENDER_INPUTS}
            if known is None or any(v is None for v in calender.values()):
                self.counts["ignored"] += 1
                return None
            coating = {**known[1], **{k: float(v) for k, v in calender.items() if v is not None}}
            observed = CALENDER_OBSERVED
            new_batch = False
        # a roll mean that is not a positive number (a gauge that saw nothing, a unit slip) is left out, not learnt
        measured = {out: v for prop, out in observed.items()
                    if (v := _number(ev.properties.get(prop))) is not None and math.isfinite(v) and v > 0}
        if not measured:
            self.counts["ignored"] += 1
            return None
        cal = self.get(electrode)
        result = cal.observe(Observation(ev.id, coating, measured, ev.time_ns, new_batch))
        self.counts["observations"] += 1
        self.update_s.append(result.update_s)
        del self.update_s[:-1000]
        if result.mismatch:
            self._mismatch(cal, result)
        self._save()
        return result

    def _mismatch(self, cal: ElectrodeCalibration, result: ObserveResult) -> None:
        self.counts["mismatches"] += 1
        cand = cal.candidate()
        worst = max(result.mismatch, key=lambda k: max(result.cusum[k]))
        message = (f"model-plant mismatch on {cal.key}: {', '.join(result.mismatch)} (CUSUM "
                   f"{max(result.cusum[worst]):.1f} > {self.settings.cusum_h:g}); proposed recalibration: "
                   + ", ".join(f"{k}={v:.4g}" for k, v in cand["values"].items()))
        if self.alarms is not None:
            self.alarms.raise_("model_mismatch", cal.key, message, "warning", outputs=result.mismatch,
                               proposal=cand["values"], accepted_version=cal.accepted)
        if self.settings.accept == "auto" and cal.observations >= self.settings.min_observations:
            self._accept(cal, "twin", f"auto: residual test found a mismatch ({', '.join(result.mismatch)})")

    def _accept(self, cal: ElectrodeCalibration, who: str, why: str) -> Version:
        before = cal.accepted
        v = cal.accept(who, why)
        self.counts["accepted"] += 1
        self._audit(cal, v, before, who, why)
        if self.alarms is not None:
            self.alarms.clear("model_mismatch", cal.key)
        return v

    def _audit(self, cal: ElectrodeCalibration, v: Version, before: int, who: str, why: str) -> None:
        if self.audit is not None:
            self.audit.record("calibration", who, why, target=f"calibration:{cal.key}", before=before,
                              after=v.number, model_version=model_version(cal.key, v.number),
                              details={"values": v.values, "std": v.std, "observations": v.observations})

    # -- engineer's actions --------------------------------------------------------------------------------------------
    def accept(self, electrode: str, who: str, why: str, product: str | None = None) -> Version:
        with self._lock:
            cal = self._existing(electrode, product)
            if cal.observations == 0:
                raise ValueError(f"{cal.key} has seen no roll records yet: nothing to accept")
            v = self._accept(cal, who, why or "accepted through the API")
            self._save()
            return v

    def rollback(self, electrode: str, number: int, who: str, why: str, product: str | None = None) -> Version:
        with self._lock:
            cal = self._existing(electrode, product)
            before = cal.accepted
            v = cal.rollback(number, who, why or "through the API")
            self._audit(cal, v, before, who, v.why)
            if self.alarms is not None:
                self.alarms.clear("model_mismatch", cal.key)
            self._save()
            return v

    def _existing(self, electrode: str, product: str | None) -> ElectrodeCalibration:
        key = f"{self.line}/{product or self.product}/{electrode}"
        cal = self.calibrations.get(key)
        if cal is None:
            raise KeyError(f"no calibration for {key}; known: {sorted(self.calibrations)}")
        return cal

    # -- views --------------------------------------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        with self._lock:
            out = []
            for cal in self.calibrations.values():
                last = cal.last
                out.append({
                    "key": cal.key, "line": cal.line, "product": cal.product, "electrode": cal.electrode,
                    "accepted": cal.current().public(), "model_version": model_version(cal.key, cal.accepted),
                    "candidate": cal.candidate(), "mismatch": list(cal.mismatch),
                    "cusum": {k: {"upper": v[0], "lower": v[1]} for k, v in cal.cusum.items()},
                    "last": None if last is None else {"residuals": last.residuals, "z": last.z, "nis": last.nis,
                                                       "candidate_z": last.candidate_z},
                    "shadow": cal.shadow_view(),
                    "versions": len(cal.versions)})
            return {"enabled": self.settings.enabled, "accept": self.settings.accept,
                    "apply_to_models": self.settings.apply_to_models, "product": self.product,
                    "counts": dict(self.counts), "calibrations": out}

    def history(self, electrode: str | None = None, product: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [{"key": cal.key, "electrode": cal.electrode, "product": cal.product, **v.public(),
                     "accepted": v.number == cal.accepted}
                    for cal in self.calibrations.values()
                    if (electrode is None or cal.electrode == electrode) and (product is None or cal.product == product)
                    for v in cal.versions]

    # -- persistence --------------------------------------------------------------------------------------------------
    def _save(self) -> None:
        path = self.settings.state_file
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(json.dumps({"line": self.line, "calibrations": [
                c.state() for c in self.calibrations.values()]}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            self.counts["errors"] += 1
            log.exception("calibration state not saved to %s", path)

    def _load(self) -> None:
        path: Path | None = self.settings.state_file
        if path is None or not path.is_file():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for c in data.get("calibrations", []):
                if c.get("line") == self.line:
                    cal = ElectrodeCalibration.from_state(c, self.est)
                    self.calibrations[cal.key] = cal
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # a damaged state file must not keep the twin down: start from the literature, keep the file aside
            self.counts["errors"] += 1
            log.error("calibration state %s unreadable (%s): starting from the literature values", path, exc)
            try:
                os.replace(path, path.with_suffix(path.suffix + ".bad"))
            except OSError:
                pass


def model_version(key: str, number: int) -> str:
    return f"calibration:{key}@v{number}"
