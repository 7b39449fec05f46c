"""The fault suite's checker finds what it claims to: a record and the rows a perfect ingest would store pass; each
kind of damage (a lost value, a second series, a wrong ID, a wrong value, a lost cycler message, a lost trace event,
an incomplete genealogy) is counted as that kind, and the rules for what could never be had are applied."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from typing import Any

from tests.faults.checker import Run, check_all, expected_ancestors
from tests.ingest.conftest import Record

S = 10**9
T0 = 1_800_000_000 * S
STEP = 5 * S


def line_record(steps: int = 40) -> Record:
    rec = Record()
    rec.opcua = defaultdict(list)
    for i in range(steps):
        t = T0 + i * STEP
        if i % 10 == 0:
            rec.opcua["Coating.Cathode.RollId"].append((t, f"CR-C-{i // 10 + 1:06d}", "Good"))
        rec.opcua["Coating.Cathode.RollPosition"].append((t, (i % 10) * 0.5, "Good"))
        rec.opcua["Coating.Cathode.WebSpeed"].append((t, 1.0 + i / 100, "Good"))
    for seq in range(1, 6):
        rec.mqtt.append(("pilotline/PL1/formation/CH-01/telemetry",
                         {"seq": seq, "time": f"2027-01-15T08:00:{seq:02d}.000000Z", "cell_id": "CELL-000001",
                          "voltage_V": 3.7}))
    events = [("LOT-NMC-0001", "RawMaterialLot", []), ("SB-C-000001", "SlurryBatch", ["LOT-NMC-0001"]),
              ("CR-C-000001", "CoatedRoll", ["SB-C-000001"]), ("CELL-000001", "Cell", ["CR-C-000001"]),
              ("FR-000001", "FormationRun", ["CELL-000001"])]
    rec.trace = [{"line": "PL1", "seq": i + 1, "id": id_, "kind": "created", "type": type_,
                  "time": f"2027-01-15T08:00:{i:02d}.000000Z", "inputs": [{"id": x} for x in inputs]}
                 for i, (id_, type_, inputs) in enumerate(events)]
    return rec


def perfect_rows(rec: Record) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    roll = {t: v for t, v, _ in rec.opcua["Coating.Cathode.RollId"]}
    pos = {t: v for t, v, _ in rec.opcua["Coating.Cathode.RollPosition"]}
    for path, values in rec.opcua.items():
        signal = path.rsplit(".", 1)[1]
        for t, v, _ in values:
            current_roll = max((rt for rt in roll if rt <= t), default=None)
            row = {"_measurement": "Coating", "lane": "Cathode", "signal": signal, "time": t, "quality": "good",
                   "roll_id": roll[current_roll] if current_roll is not None else None, "roll_position_m": pos[t],
                   "unit": "m" if signal == "RollPosition" else None}
            row["value_str" if isinstance(v, str) else "value"] = v
            rows.append(row)
    from connectors.records import iso_to_ns

    for _, msg in rec.mqtt:
        for signal in ("Voltage", "Current"):
            rows.append({"_measurement": "Formation", "lane": "CH-01", "protocol": "mqtt", "seq": msg["seq"],
                         "time": iso_to_ns(msg["time"]), "signal": signal, "cell_id": msg["cell_id"]})
    for ev in rec.trace:
        rows.append({"_measurement": "trace_events", "time": T0, "json": json.dumps(ev)})
    return rows


def upstream_from(events: list[dict[str, Any]]) -> Any:
    want, _ = expected_ancestors(events)
    return lambda cell, line: want.get((line, cell))


def test_a_perfect_store_is_clean_and_every_kind_of_damage_is_counted_as_itself() -> None:
    rec = line_record()
    rows = perfect_rows(rec)
    ok = check_all([Run(rec)], rows, upstream_from(rec.trace))
    assert ok.clean(), ok.summary()
    # the last 3 steps are not checked (no publish cycle followed them before the server stopped)
    assert ok.opcua_checked == 4 + 37 * 2 and ok.mqtt_checked == 5 and ok.trace_checked == 5 and ok.cells == 1

    def damaged(edit: Any) -> Any:
        r = copy.deepcopy(rows)
        edit(r)
        return check_all([Run(rec)], r, upstream_from(rec.trace))

    def at(r: list[dict[str, Any]], signal: str, step: int) -> dict[str, Any]:
        return next(x for x in r if x.get("signal") == signal and x["time"] == T0 + step * STEP)

    lost = damaged(lambda r: r.remove(at(r, "WebSpeed", 20)))
    assert (lost.opcua_lost, lost.mis_tagged, lost.duplicated) == (1, 0, 0), lost.summary()

    def second_series(r: list[dict[str, Any]]) -> None:
        r.append({**at(r, "WebSpeed", 21), "roll_id": "CR-C-000009"})

    dup = damaged(second_series)
    assert (dup.opcua_duplicated, dup.opcua_lost, dup.mis_tagged) == (1, 0, 0), dup.summary()

    wrong_id = damaged(lambda r: at(r, "WebSpeed", 22).update(roll_id="CR-C-000001"))  # step 22 is on roll 3
    assert wrong_id.opcua_mis_tagged == 1 and dict(wrong_id.mis_tagged_by_key) == {"roll_id": 1}
    no_pos = damaged(lambda r: at(r, "WebSpeed", 23).update(roll_position_m=None))
    assert dict(no_pos.mis_tagged_by_key) == {"roll_position_m": 1}
    wrong_value = damaged(lambda r: at(r, "WebSpeed", 24).update(value=9.0))
    assert wrong_value.opcua_wrong_value == 1 and not wrong_value.clean()
    two_units = damaged(lambda r: at(r, "RollPosition", 5).update(unit="mm"))
    assert two_units.series_with_two_units == 1

    mqtt_lost = damaged(lambda r: [r.remove(x) for x in [x for x in r if x.get("seq") == 2]])
    assert mqtt_lost.mqtt_lost == 1 and mqtt_lost.lost == 1
    without_roll = [x for x in rows if "json" not in x or json.loads(x["json"])["id"] != "CR-C-000001"]
    trace_lost = check_all([Run(rec)], without_roll,
                           upstream_from([e for e in rec.trace if e["id"] != "CR-C-000001"]))
    assert trace_lost.trace_lost == 1 and trace_lost.genealogy_incomplete == 1, trace_lost.summary()
    unknown = check_all([Run(rec)], rows, lambda cell, line: None)
    assert unknown.genealogy_unknown == 1 and not unknown.clean()


def test_what_could_never_be_had_is_not_counted_as_lost() -> None:
    rec = line_record()
    rows = perfect_rows(rec)
    # a late subscription: the first 6 steps of every node never arrived; the unchanged RollId's initial value did,
    # stamped with its own (early) time, while the position of that instant had been superseded
    late = [r for r in rows if r.get("_measurement") != "Coating" or r["time"] >= T0 + 6 * STEP
            or r["signal"] == "RollId"]
    for r in late:
        if r.get("signal") == "RollId" and r["time"] < T0 + 6 * STEP:
            r["roll_position_m"] = None  # unknown, not wrong
    report = check_all([Run(rec)], late, upstream_from(rec.trace))
    assert report.clean(), report.summary()
    # a wrong position for that early sample is still mis-tagged
    for r in late:
        if r.get("signal") == "RollId" and r["time"] == T0:
            r["roll_position_m"] = 4.5
    assert check_all([Run(rec)], late).opcua_mis_tagged == 1

    # a SIGKILLed simulator: the messages after the last stored one had not left it; a gap before it is loss
    cut = [r for r in rows if not (r.get("protocol") == "mqtt" and r["seq"] >= 4)]
    killed = check_all([Run(rec, ended="killed")], cut)
    assert (killed.mqtt_unsent, killed.mqtt_lost) == (2, 0), killed.summary()
    stopped = check_all([Run(rec, ended="stopped")], cut)
    assert stopped.mqtt_lost == 2
    gap = [r for r in rows if not (r.get("protocol") == "mqtt" and r["seq"] == 2)]
    assert check_all([Run(rec, ended="killed")], gap).mqtt_lost == 1
    # OPC UA: the killed server's last 5 instants never published; a hole before the newest stored one is loss
    end = T0 + 39 * STEP
    tail = [r for r in rows if not (r.get("_measurement") == "Coating" and r["time"] > end - 5 * STEP)]
    killed = check_all([Run(rec, ended="killed")], tail)
    assert (killed.opcua_unsent, killed.opcua_lost) == (5 * 2, 0), killed.summary()
    assert check_all([Run(rec, ended="stopped")], tail).opcua_lost == 2 * 2  # 2 steps more than the 3 left out
    hole = [r for r in tail if not (r.get("signal") == "WebSpeed" and r["time"] == T0 + 20 * STEP)]
    assert check_all([Run(rec, ended="killed")], hole).opcua_lost == 1
