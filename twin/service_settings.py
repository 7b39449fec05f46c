"""The twin service's configuration sections (``service:`` in the twin YAML), as typed pydantic models.

Every default works on one machine with no edits: the HTTP API on loopback, CORS closed, tokens in ``var/twin``,
advisory mode; the line's products, specs and setpoints come from its line description (twin/line/). Environment
overrides (``PILOTLINE__SERVICE__HTTP__PORT=8001``) are applied by ``twin.config`` before these models validate.

Signal keys are ``<station>/<signal>`` as the connectors name them, e.g. ``Drying/Cathode/MassLoading``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twin.quality.settings import QualitySettings


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in the YAML must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class HttpSettings(_Strict):
    host: str = Field(default="127.0.0.1", description="Address the API and dashboard listen on (loopback: this "
                                                       "machine only)")
    port: int = Field(8000, ge=0, le=65535, description="Port of the API and dashboard")
    cors_origins: list[str] = Field(default_factory=list, description=(
        "Origins allowed to call the API from a browser (CORS); empty = closed (the dashboard is served from the "
        "same origin)"))
    max_history_window_s: float = Field(7 * 86400.0, gt=0, description=(
        "Longest time window one history request may span, s (an expensive query is refused with 422)"))
    max_history_points: int = Field(10_000, gt=0, description="Most points one history request returns")
    sse_interval_s: float = Field(1.0, gt=0, description="GET /api/stream: a state event at most this often, s, "
                                                         "while anything changed")
    sse_max_clients: int = Field(32, ge=1, description=(
        "GET /api/stream: most server-sent-event clients at once; one more is answered 503 with Retry-After"))
    max_body_bytes: int = Field(1_048_576, ge=1024, description=(
        "Largest request body (bytes) of any route; a longer one is refused with 413 before it is read "
        "(POST /api/sparql has its own, smaller cap: 3 x 100 000 bytes)"))


class AuthSettings(_Strict):
    token_file: Path = Field(default=Path("var/twin/tokens.json"), description=(
        "The API tokens (hashed) and their roles; managed with python -m twin token"))
    read_requires_token: bool = Field(default=True, description=(
        "Reads need a viewer token too; set false only for a kiosk on a closed network"))


class SpecLimits(_Strict):
    """Specification band of one quality signal: lower / upper spec limit and target, in the signal's unit."""

    lsl: float = Field(description="Lower specification limit, in the signal's unit", examples=[13.88])
    usl: float = Field(description="Upper specification limit (above lsl)", examples=[14.74])
    target: float | None = Field(default=None, description="Target within [lsl, usl]; null = the middle of the band")

    @model_validator(mode="after")
    def _ordered(self) -> SpecLimits:
        if not self.lsl < self.usl:
            raise ValueError(f"spec limits need lsl < usl, got lsl={self.lsl}, usl={self.usl}")
        if self.target is not None and not self.lsl <= self.target <= self.usl:
            raise ValueError(f"target {self.target} lies outside [{self.lsl}, {self.usl}]")
        return self

    @property
    def centre(self) -> float:
        return self.target if self.target is not None else 0.5 * (self.lsl + self.usl)


class LiveSettings(_Strict):
    window_size: int = Field(600, ge=10, description="samples kept per signal for the rolling windows")
    ewma_lambda: float = Field(0.2, gt=0, le=1, description="EWMA weight (Montgomery: 0.05-0.25 for small shifts)")
    ewma_L: float = Field(3.0, gt=0, description="EWMA control-limit width in sigmas")
    specs: dict[str, SpecLimits] = Field(default_factory=dict, description=(
        "specification limits by Station/Signal; the line description's specs"))
    dew_point_signal: str = Field(default="DryRoom/DewPoint", description="The dry room's dew-point signal "
                                                                          "(Station/Signal), watched for the limit")
    dew_point_limit_C: float = Field(default=-40.0, description="A dew point above this, degC, raises the "
                                                                "dew_point_high alarm (critical)")
    out_of_spec_stretch_samples: int = Field(5, ge=1, description="consecutive out-of-spec samples of one roll")
    stuck_after_samples: int = Field(30, ge=3, description="identical consecutive values that mean a stuck sensor")
    missing_after_s: float = Field(30.0, gt=0, description="no sample for this long (wall clock) means missing")
    watched_signals: list[str] = Field(default_factory=list, description="signals whose absence raises an alarm")
    state_signals: list[str] = Field(default_factory=lambda: ["State", "Step", "Status", "MachineState"], description=(
        "Names of a station's text signal that says its state (the first one the station has counts); its value "
        "decides running / idle / fault, and an idle station's silent gauges raise no sensor_missing"))
    idle_states: list[str] = Field(default_factory=lambda: [
        "idle", "stopped", "waiting", "starved", "blocked", "held", "suspended", "complete", "standby", "off"],
        description="State texts (case-insensitive) that mean the station is idle (PackML-like words)")
    fault_states: list[str] = Field(default_factory=lambda: [
        "fault", "error", "aborted", "aborting", "alarm", "failed", "emergency"],
        description="State texts (case-insensitive) that mean the station is in fault; any other text is running")


class PredictSettings(_Strict):
    enabled: bool = Field(default=True, description="Predict structure, performance and cost as roll segments and "
                                                    "cells are created (trace events)")
    interval_s: float = Field(5.0, gt=0, description="Not used yet: predictions are made per trace event")
    # Which registry model (models/artifacts/<name>.card.json) produces which prediction. ``structure_model``:
    # the ONNX structure surrogate, or "process_chain" for the physics; performance / cost: used when installed
    # (their card's inputs are filled from the electrodes' setpoints and structure, ``<electrode>_<name>``).
    structure_model: str = Field(default="structure", description=(
        'Registry model (models/artifacts/<name>.card.json) of the electrode structure, or "process_chain" for the '
        "physics"))
    performance_model: str | None = Field(default="cell", description=(
        "Registry model of the cell's performance, used when installed (inputs <electrode>_<name> from the "
        "electrodes' setpoints and structure); null = none"))
    cost_model: str | None = Field(default="cost", description="Registry model of the cost, used when installed; "
                                                               "null = none")
    # Operating inputs of the cell / cost surrogates that the line does not measure per cell: the duty the cells are
    # designed for, and the plant's planned OEE and yield (models/doe.py gives their ranges). The dry-room dew point
    # is measured: the latest good DryRoom/DewPoint is used, and without one no cost prediction is made.
    operating_c_rate: float = Field(1.0, gt=0, description="C-rate of the application (1/h)")
    oee: float = Field(0.7, gt=0, le=1, description="planned overall equipment effectiveness")
    cell_yield: float = Field(0.9, gt=0, le=1, description="planned fraction of cells that pass end-of-line test")
    dew_point_signal: str = Field(default="DryRoom/DewPoint", description=(
        "The dry room's dew-point signal: its latest good value feeds the cost model (none: no cost prediction)"))
    write_to_influx: bool = Field(default=True, description="Store predictions in InfluxDB (measurement "
                                                            "twin_predictions)")
    attach_to_genealogy: bool = Field(default=True, description="Attach predictions to the predicted roll segment or "
                                                                "cell in the genealogy")


class Target(_Strict):
    """One controlled quality variable of a product: target, tolerance (for scaling and confidence) and weight."""

    signal: str = Field(description="The gauge's twin signal (Station/Signal), e.g. Drying/Cathode/MassLoading")
    output: str = Field(description="process-chain output it corresponds to, e.g. drying.dry_mass_loading_mg_cm2")
    target: float = Field(description="Target value, in the signal's unit")
    tolerance: float = Field(gt=0, description="Tolerance around the target, in the signal's unit (scales the "
                                               "deviation and the deadband)")
    weight: float = Field(1.0, ge=0, description="Weight of its squared scaled deviation in the tracking objective")
    # Gauge transport delay: the gauge sits this far along the web from the coating head; the delay from an actuator
    # at position p is (gauge_position_m - p) / web speed, plus a fixed dead time (gauge averaging, scan time).
    gauge_position_m: float = Field(0.0, ge=0, description=(
        "Where the gauge sits along the web, m from the coating head: an actuator at p acts on it after "
        "(gauge_position_m - p) / web speed"))
    dead_time_s: float = Field(0.0, ge=0, description="Fixed dead time added to that delay, s (gauge averaging, "
                                                      "scan time)")
    min_samples: int = Field(5, ge=1, description="good samples needed after the delay before the bias is trusted")
    # Per-input override of the actuator position for this gauge: e.g. the calender runs a finished coated roll, so
    # for the calendered density the coater inputs are taken as current (position = gauge position).
    input_positions_m: dict[str, float] = Field(default_factory=dict, description=(
        "Per model input: its position along the web for this gauge, m, instead of the input's own (a calender "
        "running a finished roll sees the coater's inputs as current: their position = the gauge's)"))
    max_age_s: float | None = Field(None, gt=0, description=(
        "A gauge whose newest sample is older than this (process time, against the loop's newest input sample) "
        "leaves its loop waiting instead of acting on an old bias (a calender idle between rolls); null = no limit"))


class Manipulated(_Strict):
    """One setpoint the recommender may move: hard bounds and the largest step per control interval."""

    input: str = Field(description="process-chain input, e.g. pump_flow_rate_cm3_h")
    actual_signal: str = Field(description="the twin signal (Station/Signal) that measures the actual value")
    setpoint_node: str = Field(description="the writable setpoint: a browse path below Objects "
                                           "(Machines/Coater_01/Control/PumpFlowSetpoint) or a NodeId")
    source: str = Field("", description="the OPC UA source (server) name that has the node; empty = the first")
    grant_node: str | None = Field(None, description="the node that grants remote setpoints for this one; null = its "
                                                     "source's grant_node, empty = none")
    low: float = Field(description="Lowest setpoint the recommender may propose (hard bound)")
    high: float = Field(description="Highest setpoint the recommender may propose (hard bound, above low)")
    max_step: float = Field(gt=0, description="Largest change per control interval")
    position_m: float = Field(0.0, ge=0, description="where it acts along the web, from the coating head")
    cost_weight: float = Field(0.0, ge=0, description="penalty per unit change, scaled by max_step")

    @model_validator(mode="after")
    def _bounds(self) -> Manipulated:
        if not self.low < self.high:
            raise ValueError(f"{self.input}: bounds need low < high, got [{self.low}, {self.high}]")
        return self


class MeasuredInput(_Strict):
    """A model input the recommender does not move but reads from the line (web speed, roll temperature ...)."""

    input: str = Field(description="process-chain input, e.g. web_speed_m_min")
    signal: str = Field(description="the twin signal (Station/Signal) it is read from")
    position_m: float = Field(0.0, ge=0, description="where it acts along the web, from the coating head")
    scale: float = Field(1.0, gt=0, description=(
        "Factor from the signal's unit to the model input's (0.01 for a solid content reported in %)"))
    setpoint_signal: str | None = Field(None, description=(
        "Feedforward: the signal of where the line is heading (e.g. the web-speed setpoint the HMI changes), used "
        "for the proposal so the setpoints move before the drive has ramped; the bias keeps ``signal`` (what acted "
        "on the web); null = signal"))


class Loop(_Strict):
    """A lane's control problem: which targets, which setpoints, which measured disturbances feed the model."""

    electrode: Literal["cathode", "anode"] = Field(default="cathode", description="cathode | anode: which "
                                                                                  "electrode's process chain")
    targets: list[Target] = Field(description="The quality variables it controls")
    manipulated: list[Manipulated] = Field(description="The setpoints it may move")
    measured_inputs: list[MeasuredInput] = Field(default_factory=list, description=(
        "Model inputs read from the line, not moved (web speed, roll temperature ...)"))
    web_speed_signal: str | None = Field(default=None, description=(
        "The web-speed signal (m/min) that turns gauge positions into transport delays; null = no delay"))
    deadband_enter: float | None = Field(None, ge=0, description=(
        "Hysteresis of the deadband: once every target is within control.deadband tolerances the loop holds until "
        "one is predicted further than this many tolerances from target (null = control.deadband, no hysteresis)"))
    dwell_s: float = Field(0.0, ge=0, description=(
        "Minimum dwell, s of process time: a setpoint is not moved back against its last move within this long of "
        "it (moves in the same direction and moves after a measured disturbance changed are not held back)"))
    drift_window_s: float | None = Field(None, gt=0, description=(
        "Dead-time compensation of drifts: the bias is carried forward by the residuals' linear trend over this "
        "window (s of process time) to when the proposed product reaches the gauge, where the trend is significant "
        "(> 2 standard errors); null = none (the bias acts as integral action only)"))


class Product(_Strict):
    """Targets and objective of one product. ``objective``: ``tracking`` (weighted squared deviation from the targets)
    or ``scalarised`` (seed 002 eq. 3: equal-weighted power function of properties scaled to [0, 1])."""

    objective: Literal["tracking", "scalarised"] = Field(default="tracking", description=(
        "tracking (weighted squared deviation from the targets) | scalarised (seed 002 eq. 3)"))
    loops: dict[str, Loop] = Field(description="Control loops by name (one per lane, e.g. Cathode, Anode)")
    min_energy_density_Wh_kg: float | None = Field(default=None, description="Not used yet; null")


class ControlSettings(_Strict):
    mode: Literal["off", "advisory", "closed_loop"] = Field(default="advisory", description=(
        "The mode the service starts in: off (nothing computed) | advisory (proposals wait for a person's approval). "
        "closed_loop is refused at start: only an engineer switches it on (API), only while the line grants remote "
        "setpoints"))
    interval_s: float = Field(5.0, gt=0, description="wall-clock seconds between recommendation rounds")
    live_max_duty: float = Field(0.5, ge=0, le=1, description=(
        "largest share of one core the live re-evaluation on every gauge sample may take (0 = only at rounds)"))
    product: str = Field("", description="the product running now (the line description's); empty = none")
    products: dict[str, Product] = Field(default_factory=dict, description="the line description's products")
    bias_filter: float = Field(0.6, gt=0, le=1, description="weight of a new bias estimate (1 = no filtering)")
    recommendation_ttl_s: float = Field(300.0, gt=0, description="a proposal not approved within this expires")
    min_improvement: float = Field(0.05, ge=0, description="skip proposals that lower the objective by less")
    deadband: float = Field(0.2, ge=0, description="no proposal while every target is within this many tolerances")
    # Which model the optimiser runs on: the ONNX structure surrogate (seed 002's sensors -> surrogates ->
    # actuators; an MLP ensemble, ~60 us per call through models.runtime, with the card's domain and the ensemble
    # std) or the process chain it was trained on. The physics stands in when no surrogate artifact is installed.
    model: Literal["surrogate", "physics"] = Field(
        "surrogate", description="optimise on the ONNX structure surrogate (models.runtime) or the process chain; "
        "the physics is used when no surrogate artifact is installed")
    outside_surrogate: Literal["physics", "refuse"] = Field(
        "physics", description="When the line's state lies outside the surrogate's card (a drifting solid content, a "
        "speed change) but inside the process chain's domain: optimise on the process-chain physics the surrogate "
        "was trained on (physics; the proposal's model_version says so) or refuse as out of domain (refuse)")
    domain_edge_tolerance: float = Field(
        0.02, ge=0, le=0.2, description="a measured (not manipulated) input this close outside the model's domain, "
        "as a fraction of the domain width, is clamped to its edge (sensor noise at the edge of the design space); "
        "further out the state is out of domain and nothing is recommended")
    bias_samples: int = Field(20, ge=2, description="most recent gauge samples the bias is estimated from")
    mqtt_topic: str = Field(default="pilotline/{line}/twin/recommendations", description=(
        "Topic the recommendations are published on ({line} = the line id)"))

    @model_validator(mode="after")
    def _product_exists(self) -> ControlSettings:
        if self.product and self.product not in self.products:
            raise ValueError(f"control.product {self.product!r} is not among products {sorted(self.products)}")
        return self

    @property
    def active(self) -> Product:
        """The running product; none running is a product without loops (nothing to recommend)."""
        return self.products[self.product] if self.product else Product(loops={})


ProcessStep = Literal["mixing", "coating", "drying", "calendering", "slitting", "post_drying", "assembly", "filling",
                      "formation", "dry_room", "other"]


class WorkUnit(_Strict):
    """An ISA-95 work unit (a machine) and the twin station its signals land on."""

    name: str = Field(description='The equipment\'s own name, e.g. "SlotDieCoater_01"')
    work_cell: str = Field(default="", description='ISA-95 work cell, e.g. "Electrode coating"')
    station: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z0-9][A-Za-z0-9_-]*)?$",
                         description='The twin station (and lane), e.g. "Coating/Cathode", "DryRoom", '
                                     '"Formation/CH-01"')
    step: ProcessStep = Field(default="other", description="Its place in the process flow (the dashboard draws the "
                                                           "line in this order)")


class DashboardSettings(_Strict):
    enabled: bool = Field(default=True, description="Serve the web dashboard at /")
    title: str = Field(default="Pilot line PL1", description="Not used yet")
    stations: list[WorkUnit] = Field(default_factory=list, description="the line description's work units, in "
                                                                       "process-flow order")
    overview: dict[str, list[str]] = Field(default_factory=dict, description=(
        "Not used yet: key signals per station for the line overview (it shows every signal the twin has seen)"))


class GenealogySettings(_Strict):
    enabled: bool = Field(default=True, description="Build the cell genealogy (RDF) from trace events")
    store_path: Path | None = Field(default=None, description=(
        "Directory of the persistent genealogy store (Oxigraph, with its quarantine); null = in memory, lost at "
        "restart"))
    sparql_timeout_s: float = Field(10.0, gt=0, le=300, description="POST /api/sparql: hard time limit per query")
    sparql_max_results: int = Field(10_000, ge=1, le=1_000_000, description="POST /api/sparql: most rows returned")
    sparql_max_concurrent: int = Field(4, ge=1, le=64, description=(
        "/api/sparql and /api/genealogy/export pages running at once (each in a query process at lower priority); "
        "one more is answered 429 with Retry-After"))
    sparql_max_per_user: int = Field(2, ge=1, le=64, description=(
        "/api/sparql and export pages running at once for one token (anonymous viewers: per client address); "
        "one more is answered 429 with Retry-After"))
    export_max_triples: int = Field(100_000, ge=1, le=10_000_000, description=(
        "GET /api/genealogy/export: most triples per page (limit= may ask for fewer); N-Triples pages on with "
        "cursor= from the X-Next-Cursor header; other formats only while the graph fits one page (else 413)"))
    export_cursor_ttl_s: float = Field(600.0, gt=0, le=86_400, description=(
        "An export cursor stays valid this long after its page (its snapshot of the graph is kept on disk until "
        "then); an expired one is answered 410"))
    sparql_snapshot_max_age_s: float = Field(10.0, ge=0, le=3600, description=(
        "While the line writes, /api/sparql and export read a snapshot of the graph at most this old (seconds); each "
        "new snapshot is a RocksDB checkpoint (memtable flush + sync), so 0 = newest data at an I/O cost per query"))
    sparql_max_memory_mb: int = Field(1024, ge=256, le=65_536, description=(
        "Memory (MiB of heap: RLIMIT_DATA) one query process may take; a query past it ends its process and is "
        "answered 503 'out of memory', the service is untouched"))
    export_max_open: int = Field(4, ge=1, le=64, description=(
        "Export cursors open at once (each keeps a snapshot of the graph on disk); one more export is answered 429"))
    max_seq_jump: int = Field(1_000_000, ge=0, description=(
        "A trace event whose seq is more than this ahead of the highest seq of its line (0 for a line not seen yet) "
        "is held in the genealogy quarantine as implausible and placed when the line gets within this of it; 0 = no "
        "check. A twin first attached to a line whose counter is already past this needs it raised for that start."))
    seq_window: int = Field(65_536, ge=1, le=10_000_000, description=(
        "Recent seqs per line whose events are told apart in memory (16 bytes each); older ones are looked up in "
        "the store"))
    unresolved_max_ids: int = Field(10_000, ge=0, le=1_000_000, description=(
        "Most IDs listed in the unresolved-references view (IDs samples name that no trace event created); samples "
        "naming further unknown IDs are only counted"))
    unresolved_grace_s: float = Field(600.0, ge=0, description=(
        "An ID samples name counts as unresolved once it has stayed unknown this long (a cell's samples may come "
        "just before its trace event is placed)"))
    unresolved_alarm_ids: int = Field(50, ge=1, description=(
        "Raise the unresolved_reference alarm when this many IDs have stayed unresolved past the grace time"))


class CalibrationSettings(_Strict):
    """Online calibration of the process-chain parameters from the line's roll records (twin/calibration)."""

    enabled: bool = Field(True, description=(
        "Estimate the process-chain parameters per line, product and electrode from coated and calendered roll "
        "records, run the residual test (CUSUM) and serve them at /api/calibration"))
    accept: Literal["auto", "manual"] = Field("auto", description=(
        "auto: when the residual test finds a mismatch the candidate estimate becomes the accepted version at once; "
        "manual: the mismatch alarm proposes it and an engineer accepts it (POST /api/calibration/{electrode}/accept)"))
    apply_to_models: bool = Field(True, description=(
        "Predictions and the recommender evaluate the process chain with the accepted calibrated parameters (once "
        "a version other than the literature one is accepted; until then the configured model serves)"))
    min_observations: int = Field(2, ge=1, description=(
        "Roll records the candidate must have seen before a mismatch makes it the accepted version (auto)"))
    rel_std: float = Field(0.004, gt=0, description=(
        "Relative error of a roll mean against the chain (batch-to-batch variation, gauge calibration): the filter's "
        "observation noise and the residual test's scale"))
    cusum_k: float = Field(0.5, ge=0, description="CUSUM reference value k, in standardised residuals")
    cusum_h: float = Field(5.0, gt=0, description="CUSUM decision interval h, in standardised residuals")
    walk_scale: float = Field(1.0, ge=0, description=(
        "Multiplies the parameters' random walk per roll (twin/calibration/parameters.py): larger follows drifts "
        "faster and forgets sooner"))
    state_file: Path | None = Field(None, description=(
        "Where estimates, versions and the residual test survive a restart (JSON, replaced atomically; "
        "deploy/local/twin.yaml: var/twin/calibration.json); null = in memory only, every start from the literature"))


class ServiceSettings(_Strict):
    """The ``service:`` section of the twin configuration."""

    http: HttpSettings = Field(default_factory=HttpSettings, description="The HTTP API and dashboard")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="API tokens")
    live: LiveSettings = Field(default_factory=LiveSettings, description="Live state, SPC and alarms")
    predict: PredictSettings = Field(default_factory=PredictSettings, description="Predictions from the models")
    control: ControlSettings = Field(default_factory=ControlSettings, description=(
        "Recommendations and write-back: mode, products, the optimiser"))
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings, description="The web dashboard")
    genealogy: GenealogySettings = Field(default_factory=GenealogySettings, description=(
        "The cell genealogy store and its query limits"))
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings, description=(
        "Online calibration of the process-chain parameters and the model-plant mismatch test"))
    quality: QualitySettings = Field(default_factory=QualitySettings, description=(
        "Cell record, dataset export, lab import and root cause: deadlines, row caps, concurrency (docs/quality.md)"))
