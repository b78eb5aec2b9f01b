"""Server settings: one pydantic-settings object, read from arguments or STETHOSCOPE_* variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the server can be told; environment variables use the ``STETHOSCOPE_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="STETHOSCOPE_", extra="forbid")

    db_path: str = Field("stethoscope.db", description="SQLite file; created if missing.")
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8765, ge=1, le=65535, description="TCP port to listen on.")
    ui: bool = Field(True, description="Serve the Dash dashboard at /ui/.")
    max_points_per_series: int = Field(
        100_000, ge=1, description="Most points one series may carry in one ingested batch."
    )
    max_embedding_rows: int = Field(
        16_384, ge=1, description="Most rows (samples) one embedding batch may carry."
    )
    max_embedding_dim: int = Field(
        8_192, ge=1, description="Most columns (features) one embedding batch may carry."
    )
    max_request_bytes: int = Field(
        128 << 20,
        ge=1024,
        description="Largest request body accepted (the collector's largest embedding batch, "
        "2^24 float32 values in base64, is about 90 MB).",
    )
    alert_update_interval: float = Field(
        5.0,
        ge=0.0,
        description="Seconds between stored updates of a firing alert whose severity is unchanged.",
    )
    alert_reopen_steps: int = Field(
        1000,
        ge=0,
        description="A finding that fires again within this many steps of its alert's "
        "resolution reopens that alert as a new episode instead of opening another.",
    )
    state_save_interval: float = Field(
        15.0, ge=0.0, description="Seconds between saves of a run's detector state."
    )
