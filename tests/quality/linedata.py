"""Process data for a synthetic plant history (tests/ontology/synthetic.py): the samples the line would have sent
while making the materials its trace events describe, as the twin stores them (twin.store.lineproto.sample_line).

Per coated roll, every `step_m` along the roll: the coater (roll_id = the coated roll, slurry batch tag), the beta
gauge after the dryer (roll_id = the coated roll) and the calender caliper (roll_id = the calendered roll, positions
in coated-roll coordinates); per slurry batch a viscosity every minute of mixing; the dry room's dew point every
`dew_every_s` over the whole history. Mass loading follows `mass_loading(roll, pos)`, so tests know the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from connectors.records import Sample
from twin.store.lineproto import sample_line


def _ns(text: str) -> int:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def nominal_loading(roll: str, pos: float) -> float:
    return (14.31 if "-C-" in roll else 7.43) + 0.05 * ((pos * 7.3) % 1.0 - 0.5)


def line_data(events: Iterable[dict[str, Any]], *, step_m: float = 0.25, dew_every_s: float = 60.0,
              mass_loading: Callable[[str, float], float] = nominal_loading,
              dew_point: Callable[[int], float] = lambda t: -45.0, formation_every_s: float | None = 10.0
              ) -> Iterator[str]:
    """Line-protocol lines for every event of the history (yields as it goes: a big history streams)."""
    batches_of: dict[str, list[tuple[str, float, float]]] = {}
    length_of: dict[str, float] = {}
    first_ns: int | None = None
    last_ns = 0
    for ev in events:
        t_ns = _ns(ev["time"])
        first_ns = t_ns if first_ns is None else first_ns
        last_ns = max(last_ns, t_ns)
        typ, lane = ev["type"], ("Cathode" if "-C-" in ev["id"] else "Anode")
        line = ev["line"]
        if typ == "SlurryBatch" and ev.get("start"):
            a, b = _ns(ev["start"]), _ns(ev["end"])
            for i, t in enumerate(range(a, b, 60 * 10**9)):
                yield sample_line(Sample(t, line, f"Mixing/{lane}", "Viscosity", 4.0 + 0.01 * (i % 7), "Pa.s",
                                         trace={"slurry_batch_id": ev["id"]}))
        elif typ == "CoatedRoll":
            length = float(ev.get("properties", {}).get("length_m", 20.0))
            length_of[ev["id"]] = length
            batches_of[ev["id"]] = [(i["id"], i["from_m"], i["to_m"]) for i in ev.get("inputs", [])
                                    if i.get("type") == "SlurryBatch"]
            a, b = _ns(ev["start"]), _ns(ev["end"])
            n = int(round(length / step_m))
            for k in range(n):
                pos = k * step_m + step_m / 2
                t = a + int((b - a) * pos / length)
                batch = next((sb for sb, f, e in batches_of[ev["id"]] if f <= pos < e), None)
                trace: dict[str, Any] = {"roll_id": ev["id"], "roll_position_m": pos}
                if batch:
                    trace["slurry_batch_id"] = batch
                yield sample_line(Sample(t, line, f"Coating/{lane}", "PumpFlowRate", 696.0 + (k % 5) * 0.1,
                                         "cm3/h", trace=trace))
                yield sample_line(Sample(t, line, f"Coating/{lane}", "WetFilmThickness", 180.0 + (k % 3) * 0.2,
                                         "um", trace=trace))
                yield sample_line(Sample(t + 7 * 60 * 10**9, line, f"Drying/{lane}", "MassLoading",
                                         mass_loading(ev["id"], pos), "mg/cm2",
                                         trace={"roll_id": ev["id"], "roll_position_m": pos}))
        elif typ == "FormationRun" and ev.get("start") and formation_every_s:
            a, b = _ns(ev["start"]), _ns(ev["end"])
            for i, t in enumerate(range(a, b + 1, int(formation_every_s * 10**9))):
                yield sample_line(Sample(t, line, f"Formation/{ev['equipment']}", "Voltage", 3.0 + 0.01 * i, "V",
                                         trace={"channel": ev["equipment"], "cell_id": ev["inputs"][0]["id"]}))
        elif typ == "CalenderedRoll":
            roll = ev["inputs"][0]["id"]
            a, b = _ns(ev["start"]), _ns(ev["end"])
            length = length_of.get(roll, 20.0)
            n = int(round(length / step_m))
            for k in range(n):
                pos = k * step_m + step_m / 2
                t = a + int((b - a) * pos / length)
                yield sample_line(Sample(t, line, f"Calendering/{lane}", "CalenderedThickness",
                                         48.4 + 0.01 * (k % 9), "um",
                                         trace={"roll_id": ev["id"], "source_roll_id": roll,
                                                "roll_position_m": pos}))
    if first_ns is not None:
        step = int(dew_every_s * 10**9)
        for t in range(first_ns - 3600 * 10**9, last_ns + 3600 * 10**9, step):
            yield sample_line(Sample(t, "PL1", "DryRoom", "DewPoint", dew_point(t), "Cel"))
