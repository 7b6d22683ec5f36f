"""Settings of the service and its workers, read from `SLIMFORMER_*` environment variables (pydantic-settings).

One class for both sides, because they must agree: the API and every worker find the same
database and artifact directory, and paths in the database are relative to that directory.

The embedded default needs no configuration at all: a SQLite file and an artifact folder under
`~/.slimformer`, migrated automatically at start. Pointing `SLIMFORMER_DATABASE_URL` at
PostgreSQL switches automatic migration off unless `SLIMFORMER_AUTO_MIGRATE=1` says otherwise,
because a shared database is usually upgraded on purpose (`slimformer db upgrade`), not by
whichever API or worker process happens to start first.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024
GIB = 1024 * MIB


class Settings(BaseSettings):
    """Everything the API and worker processes can be configured with.

    Attributes:
        home: root of the embedded defaults (database file, artifacts).
        database_url: SQLAlchemy URL; `postgresql://` is read as `postgresql+psycopg://`.
        artifact_dir: where uploaded data sets, run folders and exported models live. Paths in
            the database are relative to it.
        max_body_bytes: limit of a JSON request body (413 above it).
        max_upload_bytes: limit of an uploaded data set file (413 above it).
        auto_migrate: upgrade the schema at start instead of refusing to start on an old one.
            Unset: on for SQLite, off for any other database.
        default_page_size: items per page when a list request names no `limit`.
        max_page_size: the largest `limit` a list request may ask for (422 above it).
        max_teacher_upload_bytes: limit of an uploaded teacher archive (413 above it).
        max_teacher_unpacked_bytes: limit of what a teacher archive unpacks to, declared or
            actual (413 above it): the archive-bomb bound.
        max_teacher_files: the most members a teacher archive may hold (413 above it).
        teacher_roots: server folders a job's `teacher` may name over HTTP (a model folder under
            one of them). Empty (the default): none; over HTTP a job names a built-in teacher or
            one of the tenant's uploaded teachers (`POST /v1/teachers`). The artifact directory
            and the worker cache are never allowed, even under a listed folder.
        ray_address: the Ray cluster the workers use; the API only reports it (/v1/health).
        rate_limit_per_minute: job submissions plus data set and teacher uploads one API key may make per
            minute (429 with `Retry-After` above it), with bursts up to the same number; 0 turns
            the limit off. Counted in each API process's memory: N API processes behind a load
            balancer allow up to N times this, and a restart forgets the counts.
    """

    model_config = SettingsConfigDict(env_prefix="SLIMFORMER_", extra="ignore")

    home: Path = Path("~/.slimformer")
    database_url: str = ""
    artifact_dir: Path | None = None
    max_body_bytes: int = Field(1 * MIB, ge=1024)
    max_upload_bytes: int = Field(50 * MIB, ge=1024)
    auto_migrate: bool | None = None
    default_page_size: int = Field(20, ge=1, le=1000)
    max_page_size: int = Field(100, ge=1, le=1000)
    max_teacher_upload_bytes: int = Field(2 * GIB, ge=1024)
    max_teacher_unpacked_bytes: int = Field(2 * GIB, ge=1024)
    max_teacher_files: int = Field(200, ge=1, le=100_000)
    teacher_roots: list[Path] = Field(default_factory=list)
    ray_address: str | None = Field(None, validation_alias=AliasChoices("SLIMFORMER_RAY_ADDRESS", "RAY_ADDRESS"))
    rate_limit_per_minute: int = Field(60, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        # Derived defaults depend on `home`, so they are filled after every field is read.
        self.home = self.home.expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'slimformer.db'}"
        self.artifact_dir = (self.artifact_dir or self.home / "artifacts").expanduser()
        if self.auto_migrate is None:
            self.auto_migrate = self.database_url.startswith("sqlite")
        if self.default_page_size > self.max_page_size:
            raise ValueError(f"default_page_size {self.default_page_size} is over max_page_size {self.max_page_size}")
        self.teacher_roots = [p.expanduser().resolve() for p in self.teacher_roots]
        return self

    @property
    def artifacts(self) -> Path:
        """`artifact_dir`, typed as always set (it is, once validated)."""
        assert self.artifact_dir is not None
        return self.artifact_dir


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings()
