"""Online calibration of the process-chain parameters from the line's roll records (issue 13 item 2).

parameters  which parameters, their priors and random walk, the chain evaluated with them
ukf         the unscented Kalman filter (why unscented: see its docstring)
estimator   one electrode on one line and product: filter, residual test (CUSUM), versions
manager     the twin's side: trace events in, keys by line / product / electrode, alarms, audit, state file
model       the PlantModel that predictions and the recommender use: the chain with the accepted version
"""

from twin.calibration.manager import Calibration
from twin.calibration.model import CalibratedModel

__all__ = ["CalibratedModel", "Calibration"]
