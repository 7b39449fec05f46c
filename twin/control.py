"""Control modes and the recommendation queue: off, advisory (default), closed loop.

- off: no recommendations are computed.
- advisory: each round's proposal is queued (and published); a person with the operator or engineer role approves
  or rejects it; approval writes it through the setpoint writer.
- closed loop: only an engineer can switch it on, and only while the line grants remote setpoints; proposals are
  applied at once. Any anomaly (a write refused, a sensor bad or missing, the model out of domain, the connection
  lost, the grant withdrawn) drops the loop back to advisory and raises an alarm.

Between rounds, ``evaluate`` keeps a live recommendation per loop up to date (the service calls it the moment a gauge
sample arrives): it is what the next round would propose, shown at once, and the round takes it over instead of
computing again. Proposals, approvals and writes still happen once per round, so the control interval and the maximum
step per interval keep their meaning.

Every proposal, approval, rejection, expiry, write and mode change is audited (who, when, before, after, why, model
version). A value outside the hard bounds or beyond the maximum step is never written, whatever asked for it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from twin.alarms import AlarmManager
from twin.audit import AuditLog
from twin.auth import Principal, Role
from twin.recommend import Proposal, Recommender, Refusal

log = logging.getLogger("twin.control")

Mode = Literal["off", "advisory", "closed_loop"]
MODES: tuple[Mode, ...] = ("off", "advisory", "closed_loop")
State = Literal["proposed", "approved", "applied", "rejected", "expired", "failed"]

WriteFn = Callable[[str, float], Awaitable[tuple[bool, str]]]
GrantFn = Callable[[], Awaitable[bool]]
PublishFn = Callable[[dict[str, Any]], None]


class ControlError(Exception):
    """A request the controller refuses; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LiveRecommendation:
    """The latest evaluation of one loop (not yet a proposal in the queue)."""

    loop: str
    result: Proposal | Refusal
    computed_ns: int

    @property
    def kind(self) -> str:
        """``proposal``, or the refusal's kind."""
        return "proposal" if isinstance(self.result, Proposal) else self.result.kind

    def to_dict(self) -> dict[str, Any]:
        return {"loop": self.loop, "kind": self.kind, "computed_ns": self.computed_ns, "result": asdict(self.result)}


@dataclass
class Recommendation:
    id: int
    proposal: Proposal
    state: State
    created_ns: int
    expires_ns: int
    decided_by: str | None = None
    decided_ns: int | None = None
    note: str | None = None
    applied_ns: int | None = None
    writes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loop"] = self.proposal.loop
        return d


class Controller:
    def __init__(self, recommender: Recommender, audit: AuditLog, alarms: AlarmManager, write: WriteFn,
                 read_grant: GrantFn, publish: PublishFn | None = None, mode: Mode = "advisory",
                 ttl_s: float = 300.0, keep: int = 500) -> None:
        if mode == "closed_loop":
            raise ControlError("the service never starts in closed loop: an engineer must switch it on", 400)
        self.recommender = recommender
        self.audit = audit
        self.alarms = alarms
        self._write = write
        self._read_grant = read_grant
        self._publish = publish
        self.mode: Mode = mode
        self.mode_by: str = "config"
        self.ttl_ns = int(ttl_s * 1e9)
        self._ids = itertools.count(1)
        self.recs: OrderedDict[int, Recommendation] = OrderedDict()
        self._keep = keep
        self._lock = asyncio.Lock()
        self.counts: dict[str, int] = {s: 0 for s in ("proposed", "approved", "applied", "rejected", "expired",
                                                       "failed", "writes", "writes_refused", "fallbacks")}
        self.refusals: dict[str, int] = {}
        self.last_refusal: dict[str, Refusal] = {}
        self.last_round_ms: float = 0.0
        self.live: dict[str, LiveRecommendation] = {}
        self.evaluations: dict[str, int] = {}  # by outcome: proposal or the refusal's kind
        self._round_started_ns = 0
        # each loop's result the last round used: the round stores its own evaluation as the live one, which must not
        # pass for a newer evaluation at the next round
        self._round_used: dict[str, Proposal | Refusal] = {}
        self.listeners: list[Callable[[str, Recommendation], None]] = []

    # -- modes -------------------------------------------------------------------------------------------------------
    async def set_mode(self, mode: str, who: Principal, why: str = "") -> Mode:
        if mode not in MODES:
            raise ControlError(f"unknown mode {mode!r}; choose one of {list(MODES)}", 422)
        if not who.allows(Role.operator):
            raise ControlError("changing the mode needs the operator or engineer role", 403)
        if mode == "closed_loop":
            if not who.allows(Role.engineer):
                raise ControlError("only an engineer can switch the closed loop on", 403)
            if not await self._grant():
                raise ControlError("the line does not grant remote setpoints (RemoteSetpointsEnabled is false); "
                                   "the operator must enable it at the line first", 409)
            untrusted = self.recommender.check_state()
            if untrusted:
                raise ControlError("the line's state cannot be trusted for a closed loop: "
                                   + "; ".join(f"{r.loop}: {r.reason}" for r in untrusted), 409)
        before = self.mode
        self.mode = mode
        self.mode_by = who.name
        self.audit.record("mode", who.name, why or f"mode {before} -> {mode}", target="mode", before=before,
                          after=mode)
        if mode != "closed_loop" and self.alarms.is_active("control_fallback", "control"):
            self.alarms.clear("control_fallback", "control")
        return self.mode

    async def fallback(self, reason: str) -> None:
        """An anomaly: leave the closed loop for advisory, raise an alarm, audit it."""
        if self.mode != "closed_loop":
            return
        self.mode = "advisory"
        self.mode_by = "twin"
        self.counts["fallbacks"] += 1
        self.audit.record("fallback", "twin", reason, target="mode", before="closed_loop", after="advisory")
        self.alarms.raise_("control_fallback", "control", f"closed loop dropped to advisory: {reason}", "critical")
        log.warning("closed loop dropped to advisory: %s", reason)

    async def _grant(self) -> bool:
        try:
            return bool(await self._read_grant())
        except Exception as exc:  # noqa: BLE001 - an unreadable grant is no grant
            log.warning("could not read the remote-setpoint grant: %s", exc)
            return False

    # -- rounds ------------------------------------------------------------------------------------------------------
    async def run_round(self) -> list[Recommendation | Refusal]:
        """One control interval over every loop of the active product."""
        started = time.perf_counter()
        self.expire()
        out: list[Recommendation | Refusal] = []
        if self.mode == "off":
            return out
        if self.mode == "closed_loop" and not await self._grant():
            self.alarms.raise_("write_refused", "grant", "the line withdrew the remote-setpoint grant", "critical")
            await self.fallback("the line withdrew the remote-setpoint grant (RemoteSetpointsEnabled is false)")
        previous_round_ns, self._round_started_ns = self._round_started_ns, time.time_ns()
        for loop_name in list(self.recommender.product.loops):
            live = self.live.get(loop_name)
            if live is not None and live.computed_ns > previous_round_ns and \
                    live.result is not self._round_used.get(loop_name):
                self.recommender.commit(loop_name)  # the evaluation since the last round is this round's
                result = live.result
            else:
                result = await self.evaluate(loop_name, commit=True)
            self._round_used[loop_name] = result
            if isinstance(result, Refusal):
                self.refusals[result.kind] = self.refusals.get(result.kind, 0) + 1
                out.append(result)
                continue
            rec = self._propose(result)
            out.append(rec)
            if self.mode == "closed_loop":
                await self._apply(rec, f"closed-loop (enabled by {self.mode_by})", "closed loop")
        self.last_round_ms = (time.perf_counter() - started) * 1e3
        return out

    async def evaluate(self, loop_name: str, commit: bool = False) -> Proposal | Refusal:
        """Recompute one loop's recommendation now (no proposal, no write): alarms for a model out of its domain,
        and in closed loop an untrustworthy state drops to advisory at once rather than at the next round."""
        result = self.recommender.recommend(loop_name, commit=commit)
        live = self.live[loop_name] = LiveRecommendation(loop_name, result, time.time_ns())
        self.evaluations[live.kind] = self.evaluations.get(live.kind, 0) + 1
        if isinstance(result, Refusal):
            self.last_refusal[loop_name] = result
            if result.kind == "out_of_domain":
                self.alarms.raise_("model_out_of_domain", loop_name, result.reason, "warning")
            elif self.alarms.is_active("model_out_of_domain", loop_name):
                self.alarms.clear("model_out_of_domain", loop_name)
            if result.anomaly:
                await self.fallback(f"{loop_name}: {result.reason}")
            return result
        self.last_refusal.pop(loop_name, None)
        if self.alarms.is_active("model_out_of_domain", loop_name):
            self.alarms.clear("model_out_of_domain", loop_name)
        return result

    def _similar(self, a: Proposal, b: Proposal) -> bool:
        """Same setpoints within a quarter of their maximum step: not worth a new proposal for the operator."""
        pa = {s.node: s for s in a.setpoints}
        return all(s.node in pa and abs(s.after - pa[s.node].after) <= 0.25 * s.max_step for s in b.setpoints)

    def _propose(self, proposal: Proposal) -> Recommendation:
        now = time.time_ns()
        if self.mode != "closed_loop":
            for old in self.recs.values():
                if old.state == "proposed" and old.proposal.loop == proposal.loop and self._similar(old.proposal,
                                                                                                   proposal):
                    return old  # the pending one still says the same: keep it (and its place in the queue)
        for old in self.recs.values():
            if old.state == "proposed" and old.proposal.loop == proposal.loop:
                self._set_state(old, "expired", "twin", "superseded by a newer proposal")
        rec = Recommendation(id=next(self._ids), proposal=proposal, state="proposed", created_ns=now,
                             expires_ns=now + self.ttl_ns)
        self.recs[rec.id] = rec
        while len(self.recs) > self._keep:
            self.recs.popitem(last=False)
        self.counts["proposed"] += 1
        for ch in proposal.setpoints:
            self.audit.record("proposed", "twin", proposal.reason, recommendation_id=rec.id, loop=proposal.loop,
                              target=ch.node, before=ch.before, after=ch.after, model_version=proposal.model_version,
                              details={"confidence": proposal.confidence})
        if self._publish is not None:
            try:
                self._publish(rec.to_dict())
            except Exception:  # noqa: BLE001 - publishing is best effort; the API still lists it
                log.exception("publishing recommendation %s failed", rec.id)
        self._notify("proposed", rec)
        return rec

    def expire(self) -> None:
        now = time.time_ns()
        for rec in self.recs.values():
            if rec.state == "proposed" and now > rec.expires_ns:
                self._set_state(rec, "expired", "twin", "not approved in time")

    def _set_state(self, rec: Recommendation, state: State, who: str, note: str) -> None:
        rec.state = state
        rec.decided_by = rec.decided_by or who
        rec.decided_ns = rec.decided_ns or time.time_ns()
        rec.note = note
        self.counts[state] = self.counts.get(state, 0) + 1
        if state in ("expired", "rejected"):
            self.audit.record(state, who, note, recommendation_id=rec.id, loop=rec.proposal.loop,
                              model_version=rec.proposal.model_version)
        self._notify(state, rec)

    def _notify(self, event: str, rec: Recommendation) -> None:
        for fn in list(self.listeners):
            try:
                fn(event, rec)
            except Exception:  # noqa: BLE001
                log.exception("recommendation listener failed")

    # -- decisions ---------------------------------------------------------------------------------------------------
    def get(self, rec_id: int) -> Recommendation:
        rec = self.recs.get(rec_id)
        if rec is None:
            raise ControlError(f"no recommendation with id {rec_id}; list them with GET /api/recommendations", 404)
        return rec

    async def approve(self, rec_id: int, who: Principal, note: str = "") -> Recommendation:
        if not who.allows(Role.operator):
            raise ControlError("approving a recommendation needs the operator or engineer role", 403)
        self.expire()
        rec = self.get(rec_id)
        if rec.state != "proposed":
            raise ControlError(f"recommendation {rec_id} is {rec.state}; only a proposed one can be approved", 409)
        rec.decided_by, rec.decided_ns, rec.note = who.name, time.time_ns(), note or None
        rec.state = "approved"
        self.counts["approved"] += 1
        self.audit.record("approved", who.name, note or "approved", recommendation_id=rec.id, loop=rec.proposal.loop,
                          model_version=rec.proposal.model_version)
        self._notify("approved", rec)
        await self._apply(rec, who.name, note or "approved")
        return rec

    def reject(self, rec_id: int, who: Principal, note: str = "") -> Recommendation:
        if not who.allows(Role.operator):
            raise ControlError("rejecting a recommendation needs the operator or engineer role", 403)
        rec = self.get(rec_id)
        if rec.state != "proposed":
            raise ControlError(f"recommendation {rec_id} is {rec.state}; only a proposed one can be rejected", 409)
        rec.decided_by, rec.decided_ns = who.name, time.time_ns()
        self._set_state(rec, "rejected", who.name, note or "rejected")
        return rec

    # -- writes ------------------------------------------------------------------------------------------------------
    async def _apply(self, rec: Recommendation, who: str, why: str) -> None:
        async with self._lock:
            if not await self._grant():
                rec.state = "failed"
                rec.note = "the line does not grant remote setpoints"
                self.counts["failed"] += 1
                self.counts["writes_refused"] += 1
                self.audit.record("write_refused", who, "RemoteSetpointsEnabled is false; nothing written",
                                  recommendation_id=rec.id, loop=rec.proposal.loop,
                                  model_version=rec.proposal.model_version)
                self.alarms.raise_("write_refused", rec.proposal.loop, "setpoint write refused: no remote grant")
                self._notify("failed", rec)
                await self.fallback("the line withdrew the remote-setpoint grant")
                return
            ok_all = True
            for ch in rec.proposal.setpoints:
                if ch.after == ch.before:
                    continue
                problem = None
                if not ch.low <= ch.after <= ch.high:
                    problem = f"{ch.after} outside the hard bounds [{ch.low}, {ch.high}]"
                elif abs(ch.after - ch.before) > ch.max_step * (1 + 1e-9):
                    problem = f"step {ch.after - ch.before:+g} exceeds the maximum step {ch.max_step}"
                if problem is None:
                    try:
                        ok, status = await self._write(ch.node, ch.after)
                    except Exception as exc:  # noqa: BLE001 - a lost connection is a refused write
                        ok, status = False, f"{type(exc).__name__}: {exc}"
                else:
                    ok, status = False, f"not written: {problem}"
                rec.writes.append({"node": ch.node, "before": ch.before, "after": ch.after, "ok": ok,
                                   "status": status, "time_ns": time.time_ns()})
                if ok:
                    self.counts["writes"] += 1
                    self.recommender.commanded[ch.node] = (ch.after, time.monotonic())
                    self.recommender.note_move(rec.proposal, ch.node, ch.before, ch.after)
                    self.audit.record("write", who, why, recommendation_id=rec.id, loop=rec.proposal.loop,
                                      target=ch.node, before=ch.before, after=ch.after,
                                      model_version=rec.proposal.model_version, details={"status": status})
                else:
                    ok_all = False
                    self.counts["writes_refused"] += 1
                    self.audit.record("write_refused", who, status, recommendation_id=rec.id,
                                      loop=rec.proposal.loop, target=ch.node, before=ch.before, after=ch.after,
                                      model_version=rec.proposal.model_version)
                    self.alarms.raise_("write_refused", ch.node, f"write of {ch.after} to {ch.node} refused: {status}")
                    break  # never push the remaining setpoints of a half-applied recommendation
            rec.applied_ns = time.time_ns()
            rec.state = "applied" if ok_all else "failed"
            self.counts[rec.state] += 1
            self._notify(rec.state, rec)
            if not ok_all:
                await self.fallback(f"setpoint write refused for recommendation {rec.id}")

    # -- reads -------------------------------------------------------------------------------------------------------
    def list(self, state: str | None = None, limit: int = 100) -> list[Recommendation]:
        items = [r for r in reversed(self.recs.values()) if state is None or r.state == state]
        return items[:limit]
