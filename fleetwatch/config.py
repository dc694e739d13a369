"""Settings: one pydantic model, filled from a TOML file, then FLEETWATCH_* variables, then flags.

Later sources win. :func:`load_settings` also records where each value came from,
so ``fleetwatch config`` can show it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from fleetwatch.model import ObjectClass

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP_NAME = "fleetwatch"


class ConfigError(Exception):
    """A bad setting; the message is one sentence meant for the user."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]*$")
_BOOTSTRAP = re.compile(r"^[A-Za-z0-9_.\[\]:-]+:\d{1,5}(,[A-Za-z0-9_.\[\]:-]+:\d{1,5})*$")


class KafkaSettings(Section):
    bootstrap: str | None = None
    """host:port[,host:port]; None means the in-process transport."""
    partitions: int = Field(6, ge=1, le=1024)
    """Partitions for topics fleetwatch creates."""
    client: dict[str, str] = Field(default_factory=dict)
    """Extra librdkafka settings passed through (security.protocol, sasl.*, ssl.*)."""
    topic_prefix: str = ""
    """Put before the topic names by the simulator, the ingestor and the app alike, to
    keep a test or staging fleet apart on a shared broker."""

    @field_validator("bootstrap")
    @classmethod
    def _host_ports(cls, value: str | None) -> str | None:
        if value is not None and not _BOOTSTRAP.match(value):
            raise ValueError(f"invalid Kafka address {value!r}: expected HOST:PORT[,HOST:PORT...]")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError(
                f"invalid topic prefix {value!r}: use letters, digits, '.', '_' or '-'"
            )
        return value


class DatabaseSettings(Section):
    dsn: SecretStr | None = None
    """libpq connection string or URL; None means the embedded PostgreSQL."""
    data_dir: Path | None = None
    """Where the embedded PostgreSQL keeps its files; default under the user data dir."""
    retention_days: int = Field(30, ge=1)
    compress_after_days: int = Field(2, ge=1)


class SimulatorSettings(Section):
    enabled: bool = True
    vehicles: int = Field(25, ge=1, le=100_000)
    seed: int = 7
    speedup: float = Field(1.0, gt=0, le=1000)
    backfill_hours: float = Field(3.0, ge=0, le=24 * 30)
    """History generated on a first run so charts are not empty."""


class IngestSettings(Section):
    enabled: bool = True
    group: str = Field("fleetwatch-ingest", min_length=1, max_length=200, pattern=r"^\S+$")
    batch_max: int = Field(50_000, ge=1, le=1_000_000)
    """Events per transaction at most. Every batch upserts the latest state and the minute
    rollup of each vehicle in it once, so a backlog goes faster in large batches: with
    10,000 vehicles, 50,000 events (five per vehicle) instead of 20,000 cut the
    ingestor's CPU per event by about a fifth, for about 70 MB more resident memory
    (three batches can be in flight). Live, ``batch_ms`` closes a batch long before
    it fills."""
    batch_ms: int = Field(200, ge=1, le=60_000)
    status_every_s: float = Field(10.0, gt=0)


class RuleSettings(Section):
    """Alert thresholds (DESIGN.md, "Self-driving metrics" and "Alerts")."""

    speed_margin_kmh: float = Field(10.0, ge=0)
    """Speed violation: over the road's limit by more than this..."""
    speed_for_s: float = Field(10.0, ge=0)
    """...for at least this long (event time) before firing."""
    speed_clear_s: float = Field(5.0, ge=0)
    battery_fire_pct: float = Field(20.0, ge=0, le=100)
    """Low battery fires below this state of charge..."""
    battery_clear_pct: float = Field(22.0, ge=0, le=100)
    """...and resolves above this one (hysteresis)."""
    ttc_threshold_s: float = Field(2.0, gt=0)
    """Collision risk: time-to-collision below this, for a relevant object class."""
    ttc_classes: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist", "motorcycle", "bus")
    ttc_clear_s: float = Field(5.0, ge=0)
    silent_after_s: float = Field(30.0, gt=0)
    """Vehicle silent: no telemetry for this long, by the event-time watermark."""

    @field_validator("ttc_classes", mode="before")
    @classmethod
    def _split_classes(cls, value: object) -> object:
        """Accept "car,truck" (as an environment variable gives it) as well as a list."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            known = {member.value for member in ObjectClass}
            unknown = [item for item in value if item not in known]
            if unknown:
                raise ValueError(
                    f"unknown object class {unknown[0]!r}; expected a comma-separated list of "
                    + ", ".join(sorted(known))
                )
        return value

    @model_validator(mode="after")
    def _hysteresis(self) -> RuleSettings:
        if self.battery_clear_pct < self.battery_fire_pct:
            raise ValueError(
                f"battery_clear_pct ({self.battery_clear_pct:g}) must not be below "
                f"battery_fire_pct ({self.battery_fire_pct:g})"
            )
        return self


class UiSettings(Section):
    units: Literal["km", "mi"] = "km"
    window: Literal["15m", "1h", "6h", "24h", "7d"] = "1h"
    refresh_s: float = Field(1.0, ge=0.2, le=60)
    theme: str = "textual-dark"
    keys: dict[str, str] = Field(default_factory=dict)
    """Remapped keys: binding id -> keys, e.g. ``{"window.cycle" = "t"}`` (ids in the help)."""


class Settings(Section):
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    ingest: IngestSettings = IngestSettings()
    rules: RuleSettings = RuleSettings()
    ui: UiSettings = UiSettings()


def config_path() -> Path:
    """The settings file, ``config.toml`` in the platform's user config directory."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME))


Sources = dict[str, str]
"""Dotted setting name -> where its value came from ("file", "env", "flag")."""


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, name = dotted.partition(".")
    target.setdefault(section, {})[name] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """FLEETWATCH_SECTION__NAME=value -> {"section.name": (value, variable name)}.

    Two shortcuts: FLEETWATCH_KAFKA (bootstrap) and FLEETWATCH_DB (dsn).
    """
    found: dict[str, tuple[str, str]] = {}
    for key, value in environ.items():
        if not key.startswith("FLEETWATCH_"):
            continue
        rest = key[len("FLEETWATCH_") :].lower()
        if rest == "kafka":
            found["kafka.bootstrap"] = (value, key)
        elif rest == "db":
            found["database.dsn"] = (value, key)
        elif "__" in rest:
            section, name = rest.split("__", 1)
            found[f"{section}.{name}"] = (value, key)
    return found


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Settings, Sources]:
    """Build the effective settings: file, then environment, then ``flags``.

    ``flags`` maps dotted names (``"kafka.bootstrap"``) to values; ``None`` values are
    ignored so unset flags do not override anything. Raises :class:`ConfigError`.
    """
    path = path if path is not None else config_path()
    environ = environ if environ is not None else os.environ
    merged: dict[str, Any] = {}
    sources: Sources = {}
    if path.exists():
        try:
            loaded = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read the settings file {path}: {error}") from None
        for section, values in loaded.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: [{section}] must be a table of settings")
            for name, value in values.items():
                _set_dotted(merged, f"{section}.{name}", value)
                sources[f"{section}.{name}"] = f"file {path}"
    for dotted, (value, variable) in _env_overrides(environ).items():
        _set_dotted(merged, dotted, value)
        sources[dotted] = f"environment variable {variable}"
    for dotted, value in (flags or {}).items():
        if value is not None:
            _set_dotted(merged, dotted, value)
            sources[dotted] = "flag"
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        origin = sources.get(where) or next(
            (source for name, source in sources.items() if name.startswith(f"{where}.")),
            "the settings",
        )
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "no such setting"
        raise ConfigError(f"invalid setting {where} (from {origin}): {message}") from None
    return settings, sources


def describe(settings: Settings, sources: Sources) -> list[tuple[str, str, str]]:
    """(name, value, source) for every setting, secrets masked, for ``fleetwatch config``."""
    rows: list[tuple[str, str, str]] = []
    for section_name in Settings.model_fields:
        section = getattr(settings, section_name)
        for name in type(section).model_fields:
            dotted = f"{section_name}.{name}"
            value = getattr(section, name)
            shown = _mask(value)
            rows.append((dotted, shown, sources.get(dotted, "default")))
    return rows


def _mask(value: Any) -> str:
    if isinstance(value, SecretStr):
        return mask_dsn(value.get_secret_value())
    if isinstance(value, dict):
        return ", ".join(
            f"{k}={'****' if 'password' in k or 'secret' in k else v}" for k, v in value.items()
        )
    if isinstance(value, bool):  # as the settings file writes them
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(f'"{v.value if isinstance(v, Enum) else v}"' for v in value) + "]"
    if isinstance(value, Enum):
        return str(value.value)
    return "" if value is None else str(value)


def mask_dsn(dsn: str) -> str:
    """Hide the password in a libpq URL or key=value connection string."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1****@", dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1****", dsn)
