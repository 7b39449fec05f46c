"""Actuator dynamics and instrument noise: the plant's only sources of lag and randomness besides the scenario."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# First-order time constants of the actuators (simulated seconds). Order-of-magnitude values for a pilot line:
# a gear pump with flow loop settles in seconds, web drives ramp in ~10 s, hydraulic calender gap control in a few
# seconds, heated rolls, dryer air and vacuum ovens in minutes.
TAU_S: dict[str, float] = {
    "PumpFlowRate": 5.0,
    "WebSpeed": 10.0,
    "Zone1Temperature": 120.0,
    "Zone2Temperature": 120.0,
    "AirFlow": 15.0,
    "LineLoad": 3.0,
    "RollTemperature": 300.0,
    "OvenTemperature": 600.0,
}

# Instrument noise, one standard deviation, at noise_scale 1. Absolute unless the name ends in _rel.
SIGMA: dict[str, float] = {
    "PumpFlowRate_rel": 0.002,   # Coriolis flow meter, 0.2 % of reading
    "WebSpeed_rel": 0.001,       # encoder, 0.1 %
    "temperature_K": 0.2,        # Pt100 loops
    "AirFlow_rel": 0.01,         # anemometer, 1 %
    "LineLoad_N_mm": 0.2,        # load cells
    "WetFilmThickness_um": 0.5,  # laser caliper
    "DryFilmThickness_um": 0.5,  # laser caliper
    "MassLoading_rel": 0.005,    # beta gauge, 0.5 % of reading
    "CalenderedThickness_um": 0.3,  # contact / laser caliper
    "DewPoint_K": 0.5,           # chilled-mirror / capacitive sensor
    "Vacuum_mbar": 0.5,
    "ElectrolyteMass_g": 0.02,   # dosing balance
    "Voltage_V": 0.001,
    "Current_rel": 0.002,
    "CellTemperature_K": 0.1,
    "SolidContent_abs": 0.002,   # batch-to-batch solid-content variation (mass fraction), at batch_variation 1
}


@dataclass
class FirstOrder:
    """x' = (setpoint - x) / tau, integrated exactly over a step so any tick length is stable."""

    value: float
    setpoint: float
    tau_s: float

    def step(self, dt_s: float) -> float:
        self.value += (self.setpoint - self.value) * (1.0 - math.exp(-dt_s / self.tau_s))
        return self.value


class Noise:
    """All randomness of the plant comes from one seeded Generator, drawn in a fixed order every step."""

    def __init__(self, rng: np.random.Generator, scale: float) -> None:
        self.rng = rng
        self.scale = scale

    def abs(self, value: float, sigma: float) -> float:
        draw = float(self.rng.standard_normal())
        return value + draw * sigma * self.scale

    def rel(self, value: float, sigma_rel: float) -> float:
        draw = float(self.rng.standard_normal())
        return value * (1.0 + draw * sigma_rel * self.scale)
