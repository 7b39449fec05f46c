"""The HTTP API: roles, clear 4xx errors for bad input, limits, CORS closed by default, metrics, approve flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.simline import sim_specs
from tests.twin.plantsim import Plant, control_settings, new_live
from twin.alarms import AlarmManager
from twin.api import create_app
from twin.audit import AuditLog
from twin.auth import Role, TokenStore
from twin.context import TwinContext
from twin.control import Controller
from twin.metrics import Metrics
from twin.plant_model import PhysicsModel
from twin.recommend import Recommender
from twin.service_settings import LiveSettings, ServiceSettings


class Env:
    def __init__(self, tmp: Path) -> None:
        self.plant = Plant()
        self.live = new_live()
        self.grant = [True]
        settings = ServiceSettings(control=control_settings(), live=LiveSettings(specs=sim_specs()))
        settings.auth.token_file = tmp / "tokens.json"
        self.tokens = TokenStore(settings.auth.token_file)
        alarms, audit = AlarmManager(), AuditLog()
        self.live.alarms = alarms

        async def read_grant() -> bool:
            return self.grant[0]

        ctl = Controller(Recommender(settings.control, PhysicsModel(), self.live), audit, alarms, self.plant.write,
                         read_grant)
        self.ctx = TwinContext(settings=settings, line="PL1", live=self.live, alarms=alarms, audit=audit,
                               tokens=self.tokens, controller=ctl,
                               metrics=Metrics(lambda: {"samples_total": self.live.samples_total,
                                                        "mode": ctl.mode, "recommendations": ctl.counts}),
                               config_dump=lambda: {"influx": {"url": "http://x", "token": "s3cret"},
                                                    "service": settings.model_dump(mode="json")})
        self.client = TestClient(create_app(self.ctx))
        self.tok = {r.name: self.tokens.create(r, f"t-{r.name}") for r in Role}

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tok[role]}"}

    def drift(self, until_s: float = 5000.0) -> None:
        self.plant.drifted(self.live, until_s)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_tokens_are_hashed_at_rest(env: Env) -> None:
    text = env.ctx.settings.auth.token_file.read_text()
    for token in env.tok.values():
        assert token not in text
    assert env.tokens.verify(env.tok["viewer"]).role == Role.viewer  # type: ignore[union-attr]
    assert env.tokens.verify("plt_forged") is None
    with pytest.raises(ValueError, match="exists"):
        env.tokens.create("viewer", "t-viewer")
    with pytest.raises(ValueError, match="unknown role"):
        env.tokens.create("admin", "x")
    assert env.tokens.revoke("t-viewer") and env.tokens.verify(env.tok["viewer"]) is None


def test_reads_need_a_token_and_writes_the_right_role(env: Env) -> None:
    c = env.client
    assert c.get("/health").status_code == 200
    r = c.get("/api/state")
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    assert c.get("/api/state", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.get("/api/state", headers=env.h("viewer")).status_code == 200
    assert c.get("/api/whoami", headers=env.h("engineer")).json() == {"name": "t-engineer", "role": "engineer"}
    r = c.put("/api/mode", json={"mode": "off"}, headers=env.h("viewer"))
    assert r.status_code == 403 and "operator" in r.json()["detail"]
    r = c.put("/api/mode", json={"mode": "closed_loop"}, headers=env.h("operator"))
    assert r.status_code == 403 and "engineer" in r.json()["detail"]
    env.grant[0] = False
    r = c.put("/api/mode", json={"mode": "closed_loop"}, headers=env.h("engineer"))
    assert r.status_code == 409 and "RemoteSetpointsEnabled" in r.json()["detail"]
    env.grant[0] = True
    r = c.put("/api/mode", json={"mode": "closed_loop"}, headers=env.h("engineer"))
    assert r.status_code == 409 and "cannot be trusted" in r.json()["detail"]  # no data yet
    env.plant.feed(env.live)
    assert c.put("/api/mode", json={"mode": "closed_loop"}, headers=env.h("engineer")).json()["mode"] == "closed_loop"
    assert c.put("/api/mode", json={"mode": "advisory"}, headers=env.h("operator")).status_code == 200


def test_bad_input_gets_clear_4xx(env: Env) -> None:
    c, h = env.client, env.h("operator")
    r = c.put("/api/mode", json={"mode": "turbo"}, headers=h)
    assert r.status_code == 422 and "mode" in r.json()["detail"]
    assert c.put("/api/mode", content=b"{not json",
                 headers={**h, "Content-Type": "application/json"}).status_code == 422
    assert c.post("/api/recommendations/abc/approve", headers=h).status_code == 422
    r = c.post("/api/recommendations/424242/approve", headers=h)
    assert r.status_code == 404 and "GET /api/recommendations" in r.json()["detail"]
    assert c.post("/api/alarms/99/ack", headers=h).status_code == 404
    assert c.get("/api/recommendations?state=bogus", headers=h).status_code == 422
    assert c.get("/api/state/No/Such", headers=h).status_code == 404
    # expensive queries are limited before anything reaches the store
    r = c.get("/api/history", params={"signal": "Drying/Cathode/MassLoading", "limit": 10**7}, headers=h)
    assert r.status_code == 422 and "maximum" in r.json()["detail"]
    r = c.get("/api/history", params={"signal": "Drying/Cathode/MassLoading", "start": "2020-01-01T00:00:00Z",
                                      "end": "2026-01-01T00:00:00Z"}, headers=h)
    assert r.status_code == 422 and "window" in r.json()["detail"]
    r = c.get("/api/history", params={"signal": "x", "start": "yesterday"}, headers=h)
    assert r.status_code == 422
    r = c.get("/api/history", params={"signal": "NoSlash"}, headers=h)
    assert r.status_code == 422 and "<station>/<signal>" in r.json()["detail"]
    r = c.get("/api/history", params={"signal": "Drying/Cathode/MassLoading"}, headers=h)
    assert r.status_code == 503  # no store in this test: says what to configure


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers(),
                                                                          st.floats(allow_nan=True), st.none())),
                      st.lists(st.integers(), max_size=3), st.text(max_size=20)))
def test_mode_route_never_500s_on_arbitrary_json(env: Env, body: Any) -> None:
    # json.dumps writes NaN / Infinity tokens (invalid JSON): the server must still answer 422, never 500
    r = env.client.put("/api/mode", content=json.dumps(body).encode(),
                       headers={**env.h("operator"), "Content-Type": "application/json"})
    assert r.status_code in (200, 422), r.text
    assert "detail" in r.json() or r.json()["mode"] in ("off", "advisory")


def test_cors_closed_by_default(env: Env) -> None:
    r = env.client.options("/api/state", headers={"Origin": "http://evil.example",
                                                  "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
    r = env.client.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}


def test_config_is_read_only_and_redacted(env: Env) -> None:
    r = env.client.get("/api/config", headers=env.h("viewer"))
    assert r.status_code == 200 and r.json()["influx"]["token"] == "***"
    assert "s3cret" not in r.text
    assert env.client.put("/api/config", json={}, headers=env.h("engineer")).status_code == 405


def test_metrics_and_openapi(env: Env) -> None:
    env.client.get("/api/state")  # a 401 to count
    text = env.client.get("/metrics").text
    for name in ("twin_ingest_samples", "twin_queue_depth", "twin_spool_depth_records", "twin_connector_up",
                 "twin_recommendations", "twin_store_write_seconds", "twin_model_seconds",
                 'twin_http_client_errors_total{status="401"}'):
        assert name in text
    paths = env.client.get("/openapi.json").json()["paths"]
    for p in ("/api/state", "/api/history", "/api/recommendations/{rec_id}/approve", "/api/alarms/{alarm_id}/ack",
              "/api/mode", "/api/config", "/health", "/ready", "/metrics"):
        assert p in paths


async def test_approve_flow_over_http_and_viewer_cannot(env: Env) -> None:
    env.drift()
    await env.ctx.controller.run_round()
    items = env.client.get("/api/recommendations?state=proposed", headers=env.h("viewer")).json()["items"]
    assert items, "a drifted line must produce a proposal"
    rid = items[0]["id"]
    r = env.client.post(f"/api/recommendations/{rid}/approve", json={"note": "x"}, headers=env.h("viewer"))
    assert r.status_code == 403 and env.plant.writes == []
    r = env.client.post(f"/api/recommendations/{rid}/approve", json={"note": "back to target"},
                        headers=env.h("operator"))
    assert r.status_code == 200 and r.json()["state"] == "applied"
    assert env.plant.writes
    audit = env.client.get(f"/api/audit?recommendation_id={rid}", headers=env.h("viewer")).json()
    actions = {a["action"] for a in audit}
    assert {"proposed", "approved", "write"} <= actions
    w = next(a for a in audit if a["action"] == "write")
    assert w["who"] == "t-operator" and w["why"] == "back to target" and w["model_version"]
    assert w["before"] is not None and w["after"] is not None
    r = env.client.post(f"/api/recommendations/{rid}/approve", headers=env.h("operator"))
    assert r.status_code == 409


def test_alarm_ack_and_spc_rollmap(env: Env) -> None:
    env.ctx.settings.live.specs = {"Drying/Cathode/MassLoading": env.ctx.settings.live.specs[
        "Drying/Cathode/MassLoading"]}
    env.live.settings = env.ctx.settings.live
    env.drift(4200.0)  # loading drifts below the spec band: out-of-spec stretch alarm
    alarms = env.client.get("/api/alarms", headers=env.h("viewer")).json()
    oos = [a for a in alarms if a["kind"] == "out_of_spec_stretch"]
    assert oos and oos[0]["details"]["roll"] == "CR-C-000001"
    assert env.client.post(f"/api/alarms/{oos[0]['id']}/ack", headers=env.h("viewer")).status_code == 403
    r = env.client.post(f"/api/alarms/{oos[0]['id']}/ack", headers=env.h("operator"))
    assert r.status_code == 200 and r.json()["acked_by"] == "t-operator"
    spc = env.client.get("/api/spc?signal=Drying/Cathode/MassLoading", headers=env.h("viewer")).json()
    assert spc[0]["n"] > 100 and spc[0]["cpk"] is not None and spc[0]["cpk"] < 1.0
    rm = env.client.get("/api/rollmap?signal=Drying/Cathode/MassLoading", headers=env.h("viewer")).json()
    assert rm["spec"]["lsl"] == 13.88 and len(rm["points"]) > 100


def test_switching_the_product_is_an_engineers_audited_action(env: Env) -> None:
    control = env.ctx.settings.control
    control.products["q"] = control.products["p"].model_copy(deep=True)
    assert env.client.get("/api/product", headers=env.h("viewer")).json() == {"product": "p", "products": ["p", "q"]}
    r = env.client.put("/api/product", json={"product": "q"}, headers=env.h("operator"))
    assert r.status_code == 403
    r = env.client.put("/api/product", json={"product": "nope"}, headers=env.h("engineer"))
    assert r.status_code == 422 and "nope" in r.json()["detail"]
    env.ctx.controller.recommender.biases[("Cathode", "x")] = 0.4  # the old product's state
    r = env.client.put("/api/product", json={"product": "q", "why": "recipe B"}, headers=env.h("engineer"))
    assert r.status_code == 200 and r.json()["before"] == "p"
    assert control.product == "q" and not env.ctx.controller.recommender.biases
    entry = next(a for a in env.client.get("/api/audit", headers=env.h("viewer")).json() if a["action"] == "product")
    assert (entry["before"], entry["after"], entry["why"]) == ("p", "q", "recipe B")
