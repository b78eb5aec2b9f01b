"""The HTTP API's request and response bodies (the wire format of docs/architecture.md).

JSON has no NaN or Infinity, and a NaN is the most important value a training can send, so
values travel as JSON numbers or the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, in
both directions. Embeddings travel as base64 of little-endian C-order arrays, not lists of floats.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SERIES_NAME_PATTERN = r"^[A-Za-z0-9_.:/-]{1,200}$"
BATCH_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
RESERVED_PREFIX = "stethoscope/"

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# numbers (ints too) or exactly one of the three strings; "nan", "1.5" or true are rejected
WireFloat = StrictFloat | StrictInt | Literal["NaN", "Infinity", "-Infinity"]
_DTYPES = {"float16": "<f2", "float32": "<f4", "float64": "<f8"}
MAX_INT64 = 2**63 - 1
Step = Annotated[int, Field(ge=0, le=MAX_INT64)]


def wire_values_to_array(values: list[Any]) -> np.ndarray:
    """Wire values (numbers and NaN/Infinity strings) as a float64 array."""
    return np.array([_SPECIAL[v] if isinstance(v, str) else v for v in values], dtype=np.float64)


class _Out(BaseModel):
    """Base of response bodies: non-finite floats are written as "NaN"/"Infinity" strings."""

    model_config = ConfigDict(ser_json_inf_nan="strings")


class ScalarSeriesIn(BaseModel):
    """Points of one scalar series: parallel ``steps`` and ``values`` lists."""

    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(min_length=1)
    values: list[WireFloat] = Field(min_length=1)

    @model_validator(mode="after")
    def _same_length(self) -> ScalarSeriesIn:
        if len(self.steps) != len(self.values):
            raise ValueError(
                f"steps has {len(self.steps)} entries but values has {len(self.values)}; "
                "send one value per step"
            )
        return self


class EmbeddingIn(BaseModel):
    """One (n, d) embedding batch, base64 of its little-endian C-order bytes."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=0, le=MAX_INT64)
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description='e.g. "fake" or "real"')
    dtype: Literal["float16", "float32", "float64"] = "float32"
    shape: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]
    data: str

    @field_validator("data")
    @classmethod
    def _is_base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(
                f"data is not valid base64 ({exc}); encode the array's bytes with base64"
            ) from exc
        return value

    @model_validator(mode="after")
    def _size_matches_shape(self) -> EmbeddingIn:
        expected = self.shape[0] * self.shape[1] * np.dtype(_DTYPES[self.dtype]).itemsize
        got = len(base64.b64decode(self.data))
        if got != expected:
            raise ValueError(
                f"data holds {got} bytes but shape {list(self.shape)} of {self.dtype} needs "
                f"{expected}; send the array's raw C-order bytes and its exact shape"
            )
        return self

    def array(self) -> np.ndarray:
        """The decoded (n, d) array as float32."""
        raw = np.frombuffer(base64.b64decode(self.data), dtype=_DTYPES[self.dtype])
        return raw.reshape(self.shape).astype(np.float32)


class BatchIn(BaseModel):
    """One batch from a collector: scalar points and embedding batches of one run."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str = Field(
        pattern=BATCH_ID_PATTERN,
        description="Unique per batch; a retry reuses it so the batch is stored once.",
    )
    alert_cursor: int = Field(
        0, ge=0, le=MAX_INT64, description="Highest alert seq the sender has seen."
    )
    scalars: dict[str, ScalarSeriesIn] = Field(default_factory=dict)
    embeddings: list[EmbeddingIn] = Field(default_factory=list)

    @field_validator("scalars")
    @classmethod
    def _series_names(cls, value: dict[str, ScalarSeriesIn]) -> dict[str, ScalarSeriesIn]:
        for name in value:
            if not re.match(SERIES_NAME_PATTERN, name):
                raise ValueError(
                    f"series name {name!r} is not allowed; use 1-200 letters, digits or _ . : / -"
                )
            if name.startswith(RESERVED_PREFIX):
                raise ValueError(
                    f"series name {name!r} starts with {RESERVED_PREFIX!r}, which is reserved "
                    "for the server's own signals; rename the series"
                )
        return value


class RunIn(BaseModel):
    """Create or update a run: its configuration, status and/or detector configuration."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = Field(None, description="The training's hyper-parameters.")
    status: Literal["running", "finished", "failed"] | None = None
    detectors: dict[str, Any] | None = Field(
        None,
        description=(
            "Per-run detector configuration: series roles, thresholds, enabled detectors, e.g. "
            '{"roles": {"loss_d": "errD"}, "spike": {"warn_z": 8}, "enabled": {"drift": false}}. '
            "See docs/detectors.md."
        ),
    )


class HealthOut(_Out):
    state: str = "unknown"
    firing: dict[str, int] = Field(default_factory=dict)
    detectors: list[dict[str, Any]] = Field(default_factory=list)
    pending_evaluations: int = Field(0, description="Embedding evaluations not yet run.")


class RunOut(_Out):
    name: str
    status: str
    config: dict[str, Any]
    created_at: float
    updated_at: float
    last_step: int | None
    detectors: dict[str, Any] = Field(default_factory=dict)
    health: HealthOut


class RemedyOut(_Out):
    action: str
    citation: str = ""


class AlertOut(_Out):
    """One alert in its latest state; a resolved alert keeps its firing record."""

    id: int
    run: str
    kind: str
    key: str
    severity: str = Field(description="Highest severity of the current (or last) episode.")
    status: str = Field(description="`firing` or `resolved`.")
    step: int = Field(description="Step of the latest firing finding.")
    first_step: int = Field(description="Step at which the alert first fired.")
    message: str = Field(description="What the detector saw when it (last) fired.")
    evidence: dict[str, float]
    remedies: list[RemedyOut]
    count: int = Field(description="Stored changes of this alert (fired, updates, resolutions).")
    seq: int
    created_at: float
    updated_at: float
    resolved_at: float | None
    detector: str
    subject: str | None
    episodes: int = Field(1, description="How many times the alert fired (reopened counts).")
    resolved_step: int | None = Field(None, description="Step at which it resolved, if it did.")
    resolved_message: str | None = Field(None, description="Why it resolved, if it did.")
    last_event: str = Field(
        "fired", description="Its latest change: fired, updated, escalated, resolved, reopened.")


class AlertEventOut(_Out):
    """One entry of an alert's history."""

    alert_id: int
    seq: int
    event: str
    severity: str
    step: int
    message: str
    evidence: dict[str, float]
    at: float


class IngestOut(_Out):
    batch_id: str
    duplicate: bool
    stored_points: int
    stored_embeddings: int
    alerts: list[AlertOut]
    alert_cursor: int


class SeriesInfoOut(_Out):
    name: str
    points: int
    first_step: int | None
    last_step: int | None
    nonfinite: int


class SeriesOut(_Out):
    name: str
    steps: list[int]
    values: list[float]
    total_points: int = Field(description="Points in the requested range before downsampling.")
    downsampled: bool


class EmbeddingInfoOut(_Out):
    step: int
    name: str
    n: int
    d: int


class EmbeddingOut(_Out):
    step: int
    name: str
    dtype: Literal["float32"] = "float32"
    shape: tuple[int, int]
    data: str = Field(description="base64 of little-endian float32 C-order bytes")
