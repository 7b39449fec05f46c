"""The quality views' settings (``service.quality``): kept apart from the code so that the service's settings can
hold them without importing numpy, scikit-learn or the genealogy store."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QualitySettings(BaseModel):
    """Bounds of the cell record, dataset export, lab import and root cause (``service.quality``)."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(10.0, gt=0, description="Deadline of one cell record or lab import, s (HTTP 504 past it)")
    query_timeout_s: float = Field(5.0, gt=0, description="Timeout of each InfluxDB request of the quality views, s")
    max_rows: int = Field(200_000, ge=1_000, description="Most rows one InfluxDB answer may hold (a wider question "
                                                         "is refused with 422: narrow it)")
    max_concurrent: int = Field(2, ge=1, description="Quality computations running at once (429 past it): each "
                                                     "holds a worker thread and a core")
    dataset_max_cells: int = Field(20_000, ge=1, description="Most cells in one dataset export or root-cause run")
    dataset_timeout_s: float = Field(300.0, gt=0, description="Deadline of a dataset export or root-cause run, s")
    capacity_key: str = Field("discharge_capacity_Ah", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
                              description="Formation result compared with capacity_below")
    lab_max_rows: int = Field(100_000, ge=1, description="Most rows in one lab import")
