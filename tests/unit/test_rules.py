"""Unit tests of the alert rules and the alert lifecycle (fleetwatch.pipeline.rules)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from fleetwatch.config import RuleSettings
from fleetwatch.model import (
    DrivingEvent,
    DrivingEventType,
    ObjectClass,
    PerceptionEvent,
    Telemetry,
    WireModel,
)
from fleetwatch.pipeline.rules import (
    ALERT_COLUMNS,
    COLLISION_RISK,
    COLLISION_SUMMARY,
    LOW_BATTERY,
    SPEED_SUMMARY,
    SPEED_VIOLATION,
    VEHICLE_SILENT,
    Alert,
    AlertEngine,
    Transition,
    alert_from_row,
    collision_summary,
    speed_summary,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
RULES = RuleSettings()  # margin 10 km/h for 10 s, clear 5 s; battery 20/22 %; TTC 2 s, 5 s


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def telemetry(
    seconds: float,
    *,
    vehicle: str = "v1",
    speed: float = 40.0,
    limit: float = 50.0,
    battery: float = 80.0,
) -> Telemetry:
    return Telemetry(
        event_id=uuid.uuid4(),
        time=at(seconds),
        vehicle_id=vehicle,
        speed_kmh=speed,
        speed_limit_kmh=limit,
        lat=52.5,
        lon=13.4,
        heading_deg=90.0,
        battery_pct=battery,
        range_km=200.0,
        odometer_km=1000.0 + seconds / 100,
        autopilot=True,
        city="Berlin",
        route_id="r1",
    )


def perception(
    seconds: float,
    *,
    vehicle: str = "v1",
    object_class: ObjectClass = ObjectClass.PEDESTRIAN,
    distance: float = 9.0,
    closing: float = 9.0 / 1.4,
) -> PerceptionEvent:
    return PerceptionEvent(
        event_id=uuid.uuid4(),
        time=at(seconds),
        vehicle_id=vehicle,
        object_class=object_class,
        distance_m=distance,
        closing_speed_mps=closing,
        bearing_deg=0.0,
        confidence=0.9,
    )


def driving(seconds: float, *, vehicle: str = "v1") -> DrivingEvent:
    return DrivingEvent(
        event_id=uuid.uuid4(),
        time=at(seconds),
        vehicle_id=vehicle,
        type=DrivingEventType.HARD_BRAKE,
        lat=52.5,
        lon=13.4,
        speed_kmh=30.0,
        autopilot=True,
    )


@dataclass(frozen=True)
class Tick:
    """A watermark step in a scripted stream."""

    seconds: float


Step = WireModel | Tick


def feed(engine: AlertEngine, steps: Iterable[Step]) -> None:
    for step in steps:
        if isinstance(step, Tick):
            engine.tick(at(step.seconds))
        else:
            engine.observe(step)


def seconds_of(time: datetime | None) -> float | None:
    return None if time is None else (time - T0).total_seconds()


def changes(transitions: Sequence[Transition]) -> list[tuple[float | None, str, Any, str]]:
    """(seconds, rule, from_state, to_state) of each transition."""
    return [(seconds_of(t.time), t.rule, t.from_state, t.to_state) for t in transitions]


def run(steps: Iterable[Step], rules: RuleSettings = RULES) -> tuple[AlertEngine, list[Transition]]:
    engine = AlertEngine(rules)
    feed(engine, steps)
    _, transitions = engine.take_changes()
    return engine, transitions


# --------------------------------------------------------------------------- speed


def speeds(samples: Iterable[tuple[float, float]], limit: float = 50.0) -> list[Step]:
    return [telemetry(s, speed=v, limit=limit) for s, v in samples]


SPEED_CASES = [
    pytest.param(
        speeds((s, 62.0) for s in range(10)),
        [(0, SPEED_VIOLATION, None, "pending")],
        id="breach-shorter-than-for-stays-pending",
    ),
    pytest.param(
        speeds((s, 62.0) for s in range(11)),
        [(0, SPEED_VIOLATION, None, "pending"), (10, SPEED_VIOLATION, "pending", "firing")],
        id="fires-exactly-after-for-duration",
    ),
    pytest.param(
        speeds([*((s, 62.0) for s in range(6)), (6, 55.0), (7, 62.0)]),
        [
            (0, SPEED_VIOLATION, None, "pending"),
            (6, SPEED_VIOLATION, "pending", "resolved"),
            (7, SPEED_VIOLATION, None, "pending"),
        ],
        id="pending-that-clears-resolves-without-firing-and-restarts",
    ),
    pytest.param(
        speeds([*((s, 62.0) for s in range(11)), *((s, 45.0) for s in range(11, 17))]),
        [
            (0, SPEED_VIOLATION, None, "pending"),
            (10, SPEED_VIOLATION, "pending", "firing"),
            (16, SPEED_VIOLATION, "firing", "resolved"),
        ],
        id="resolves-after-clear-duration",
    ),
    pytest.param(
        speeds(
            [
                *((s, 62.0) for s in range(11)),
                *((s, 45.0) for s in range(11, 15)),
                (15, 70.0),
                *((s, 45.0) for s in range(16, 22)),
            ]
        ),
        [
            (0, SPEED_VIOLATION, None, "pending"),
            (10, SPEED_VIOLATION, "pending", "firing"),
            (21, SPEED_VIOLATION, "firing", "resolved"),
        ],
        id="breach-during-clear-run-restarts-it",
    ),
    pytest.param(
        speeds((s, 60.0) for s in range(20)),
        [],
        id="exactly-the-margin-is-no-breach",
    ),
    pytest.param(
        speeds(((s, 90.0) for s in range(20)), limit=0.0),
        [],
        id="unknown-limit-is-not-judged",
    ),
    pytest.param(
        speeds([(0, 62.0), (5, 62.0), (10, 62.0)]),
        [(0, SPEED_VIOLATION, None, "pending"), (10, SPEED_VIOLATION, "pending", "firing")],
        id="for-duration-is-event-time-not-sample-count",
    ),
    pytest.param(
        speeds([(0, 62.0), (4, 62.0), (60, 62.0), (69, 62.0), (70, 62.0)]),
        [
            (0, SPEED_VIOLATION, None, "pending"),
            (60, SPEED_VIOLATION, "pending", "resolved"),
            (60, SPEED_VIOLATION, None, "pending"),
            (70, SPEED_VIOLATION, "pending", "firing"),
        ],
        id="gap-longer-than-for-duration-is-not-sustained",
    ),
    pytest.param(
        speeds([*((s, 62.0) for s in range(11)), (80, 62.0), (81, 40.0)]),
        [
            (0, SPEED_VIOLATION, None, "pending"),
            (10, SPEED_VIOLATION, "pending", "firing"),
        ],
        id="firing-alert-survives-a-gap",
    ),
]


@pytest.mark.parametrize(("steps", "expected"), SPEED_CASES)
def test_speed_violation_lifecycle(steps: list[Step], expected: list[tuple[Any, ...]]) -> None:
    _, transitions = run(steps)
    # Some cases have gaps in telemetry, which the silence rule records too.
    assert changes([t for t in transitions if t.rule == SPEED_VIOLATION]) == expected


def test_speed_for_zero_fires_on_first_breach() -> None:
    rules = RuleSettings(speed_for_s=0, speed_clear_s=0)
    _, transitions = run(speeds([(0, 62.0), (1, 40.0)]), rules)
    assert changes(transitions) == [
        (0, SPEED_VIOLATION, None, "firing"),
        (1, SPEED_VIOLATION, "firing", "resolved"),
    ]


def test_pending_that_clears_is_kept_as_resolved_row_that_never_fired() -> None:
    engine, _ = run(speeds([(0, 62.0), (1, 65.0), (2, 50.0)]))
    assert engine.open_count() == 0
    feed(engine, speeds([(3, 40.0)]))
    alerts, _ = engine.take_changes()
    assert alerts == []
    engine, _ = run([])
    feed(engine, speeds([(0, 62.0), (1, 65.0), (2, 50.0)]))
    (alert,), _ = engine.take_changes()
    assert (alert.state, alert.fired_at, seconds_of(alert.resolved_at)) == ("resolved", None, 2)
    assert alert.breach_count == 2


def test_speed_breach_count_worst_value_summary_and_escalation() -> None:
    samples = [(0, 62.0), (1, 75.0), (2, 66.0), *((s, 62.0) for s in range(3, 11)), (11, 85.0)]
    engine, transitions = run(speeds(samples))
    assert [(seconds_of(t.time), t.from_state, t.to_state, t.severity) for t in transitions] == [
        (0, None, "pending", "warning"),
        (10, "pending", "firing", "warning"),
        (11, "firing", "firing", "critical"),  # escalation: 35 km/h over
    ]
    alert = transitions[-1].alert
    assert alert.breach_count == 12
    assert alert.value == pytest.approx(35.0)
    assert alert.summary == "85 km/h in a 50 km/h zone"
    assert transitions[0].value == pytest.approx(12.0)  # value when the change happened
    assert engine.open_count() == 1


def test_speed_critical_while_pending_fires_as_critical_without_extra_transition() -> None:
    _, transitions = run(speeds([(0, 62.0), (5, 90.0), (10, 62.0)]))
    assert [(seconds_of(t.time), t.to_state, t.severity) for t in transitions] == [
        (0, "pending", "warning"),
        (10, "firing", "critical"),
    ]
    assert transitions[-1].alert.summary == "90 km/h in a 50 km/h zone"


# --------------------------------------------------------------------------- battery


def batteries(levels: Iterable[float]) -> list[Step]:
    return [telemetry(s, battery=b) for s, b in enumerate(levels)]


BATTERY_CASES = [
    pytest.param([25, 20.0, 19.99], [(2, None, "firing")], id="fires-below-threshold-at-once"),
    pytest.param(
        [19.5, 20.5, 21.9, 19.8, 21.0, 22.0, 20.1, 19.9],
        [(0, None, "firing")],
        id="no-flapping-between-20-and-22",
    ),
    pytest.param(
        [19.5, 21.0, 22.1, 21.0, 19.0],
        [(0, None, "firing"), (2, "firing", "resolved"), (4, None, "firing")],
        id="resolves-only-above-clear-threshold",
    ),
    pytest.param(
        [18, 9.9, 5, 12],
        [(0, None, "firing"), (1, "firing", "firing")],
        id="escalates-once-below-10",
    ),
]


@pytest.mark.parametrize(("levels", "expected"), BATTERY_CASES)
def test_low_battery_lifecycle(levels: list[float], expected: list[tuple[Any, ...]]) -> None:
    _, transitions = run(batteries(levels))
    assert [(seconds_of(t.time), t.from_state, t.to_state) for t in transitions] == expected
    assert {t.rule for t in transitions} <= {LOW_BATTERY}


def test_battery_breach_count_worst_value_and_summary() -> None:
    engine, transitions = run(batteries([19.5, 21.0, 18.0, 19.0, 21.5]))
    alert = transitions[0].alert
    assert alert.breach_count == 3  # samples below 20 %, not those in the band
    assert alert.value == 18.0
    assert alert.summary == "battery 18 %"
    assert alert.severity == "warning"
    assert engine.open_count() == 1
    _, transitions = run(batteries([9.5, 8.25]))
    assert transitions[0].alert.summary == "battery 8.2 %"
    assert [t.severity for t in transitions] == ["critical"]


def test_clear_threshold_below_fire_threshold_does_not_flap() -> None:
    # Settings refuse this; the engine stays safe if handed it anyway.
    rules = RuleSettings.model_construct(battery_fire_pct=20, battery_clear_pct=15)
    _, transitions = run(batteries([18, 18, 19, 21]), rules)
    assert changes(transitions) == [
        (0, LOW_BATTERY, None, "firing"),
        (3, LOW_BATTERY, "firing", "resolved"),
    ]


# --------------------------------------------------------------------------- collision


TTC_CASES = [
    pytest.param(perception(0), True, id="pedestrian-ttc-1.4s"),
    pytest.param(perception(0, object_class=ObjectClass.TRUCK, distance=30, closing=16), True,
                 id="truck-ttc-1.9s"),
    pytest.param(perception(0, distance=20, closing=10), False, id="ttc-exactly-threshold"),
    pytest.param(perception(0, object_class=ObjectClass.UNKNOWN), False, id="irrelevant-class"),
    pytest.param(perception(0, closing=0.0), False, id="not-closing"),
    pytest.param(perception(0, closing=-8.0), False, id="moving-away"),
    pytest.param(perception(0, distance=0.0, closing=1.0), True, id="touching"),
]  # fmt: skip


@pytest.mark.parametrize(("event", "fires"), TTC_CASES)
def test_collision_risk_by_class_and_closing_speed(event: PerceptionEvent, fires: bool) -> None:
    _, transitions = run([event])
    assert changes(transitions) == ([(0, COLLISION_RISK, None, "firing")] if fires else [])
    if fires:
        assert transitions[0].severity == "critical"


def test_collision_classes_come_from_settings() -> None:
    rules = RuleSettings(ttc_classes=("pedestrian",))
    _, transitions = run([perception(0, object_class=ObjectClass.CAR)], rules)
    assert transitions == []
    _, transitions = run([perception(0, object_class=ObjectClass.PEDESTRIAN)], rules)
    assert len(transitions) == 1


def test_collision_summary_and_worst_value() -> None:
    _, transitions = run([perception(0), perception(0.5, distance=6.0, closing=6.0)])
    alert = transitions[0].alert
    assert alert.summary == "pedestrian TTC 1.0 s at 6.0 m"
    assert alert.value == pytest.approx(1.0)
    assert alert.breach_count == 2
    _, transitions = run([perception(0)])
    assert transitions[0].alert.summary == "pedestrian TTC 1.4 s at 9.0 m"


COLLISION_RESOLUTION_CASES = [
    pytest.param([perception(0), telemetry(4.9)], [], id="later-telemetry-too-soon"),
    pytest.param([perception(0), telemetry(6)], [5.0], id="later-telemetry-resolves-at-clear"),
    pytest.param([perception(0), driving(5)], [5.0], id="driving-event-resolves"),
    pytest.param([perception(0), perception(7, distance=80)], [5.0],
                 id="harmless-perception-resolves"),
    pytest.param([perception(0), Tick(4.9)], [], id="watermark-too-soon"),
    pytest.param([perception(0), Tick(5)], [5.0], id="watermark-resolves"),
    pytest.param([perception(0), perception(3), Tick(7)], [], id="new-breach-extends"),
    pytest.param([perception(0), perception(3), telemetry(8)], [8.0], id="clear-from-last-breach"),
    pytest.param([perception(0), perception(0, vehicle="v2"), Tick(5)], [5.0, 5.0],
                 id="per-vehicle"),
]  # fmt: skip


@pytest.mark.parametrize(("steps", "resolved_at"), COLLISION_RESOLUTION_CASES)
def test_collision_resolution_by_later_events_and_watermark(
    steps: list[Step], resolved_at: list[float]
) -> None:
    engine, transitions = run(steps)
    resolved = [t for t in transitions if t.to_state == "resolved"]
    assert [seconds_of(t.time) for t in resolved] == resolved_at
    assert [seconds_of(t.alert.resolved_at) for t in resolved] == resolved_at
    fired = sum(1 for t in transitions if t.from_state is None)
    assert engine.open_count() == fired - len(resolved)


def test_sparse_breaches_make_two_alerts() -> None:
    _, transitions = run([perception(0), perception(10)])
    assert changes(transitions) == [
        (0, COLLISION_RISK, None, "firing"),
        (5, COLLISION_RISK, "firing", "resolved"),
        (10, COLLISION_RISK, None, "firing"),
    ]
    assert transitions[0].alert is not transitions[2].alert


def test_several_objects_in_one_frame_all_count() -> None:
    frame = [perception(0), perception(0, object_class=ObjectClass.CYCLIST, distance=4)]
    _, transitions = run(frame)
    alert = transitions[0].alert
    assert alert.breach_count == 2
    assert alert.summary.startswith("cyclist TTC")


# --------------------------------------------------------------------------- silence


def test_silence_by_watermark_and_recovery() -> None:
    engine = AlertEngine(RULES)
    feed(engine, [telemetry(0), telemetry(1), Tick(30.9)])
    assert engine.take_changes() == ([], [])
    feed(engine, [Tick(31)])
    (alert,), (fired,) = engine.take_changes()
    assert (fired.rule, fired.from_state, fired.to_state) == (VEHICLE_SILENT, None, "firing")
    assert seconds_of(fired.time) == 31  # last telemetry + silent_after_s
    assert (seconds_of(alert.first_seen), seconds_of(alert.fired_at)) == (1, 31)
    assert alert.summary == "no telemetry for 30 s"
    feed(engine, [Tick(45)])
    assert engine.take_changes() == ([], [])  # grows in steps of silent_after_s
    feed(engine, [Tick(61)])
    (extended,), transitions = engine.take_changes()
    assert extended is alert and transitions == []
    assert alert.summary == "no telemetry for 60 s"
    feed(engine, [Tick(50), telemetry(76)])
    (resolved,), (transition,) = engine.take_changes()
    assert (transition.from_state, transition.to_state) == ("firing", "resolved")
    assert seconds_of(resolved.resolved_at) == 76
    assert resolved.value == 75.0
    assert resolved.summary == "no telemetry for 75 s"
    assert engine.open_count() == 0


def test_a_gap_no_tick_saw_is_recorded_when_telemetry_resumes() -> None:
    """A whole gap inside one batch (the watermark ticks only between batches) still
    leaves its silence in the history, fired and resolved."""
    engine = AlertEngine(RULES)
    feed(engine, [telemetry(0), telemetry(1), telemetry(41), telemetry(42), Tick(42)])
    (alert,), transitions = engine.take_changes()
    assert [(t.from_state, t.to_state) for t in transitions] == [
        (None, "firing"),
        ("firing", "resolved"),
    ]
    assert (alert.rule, alert.state) == (VEHICLE_SILENT, "resolved")
    assert (seconds_of(alert.first_seen), seconds_of(alert.fired_at)) == (1, 31)
    assert seconds_of(alert.resolved_at) == 41
    assert alert.summary == "no telemetry for 40 s"
    assert engine.open_count() == 0


def test_a_short_gap_is_not_a_silence() -> None:
    engine = AlertEngine(RULES)
    feed(engine, [telemetry(0), telemetry(29.5), Tick(29.5)])
    assert engine.take_changes() == ([], [])


def test_silence_ignores_the_wall_clock_and_vehicles_without_telemetry() -> None:
    engine = AlertEngine(RULES)
    feed(engine, [perception(0, distance=100), driving(0, vehicle="v2"), Tick(1000)])
    assert engine.take_changes() == ([], [])
    feed(engine, [telemetry(990, vehicle="v3"), Tick(1000)])  # watermark did not advance
    assert engine.take_changes() == ([], [])
    feed(engine, [Tick(1020)])
    _, transitions = engine.take_changes()
    assert [(t.vehicle_id, seconds_of(t.time)) for t in transitions] == [("v3", 1020)]


# --------------------------------------------------------------------------- replay


def v1_battery(s: int) -> float:
    if s < 46:
        return 30.0 - 0.25 * s  # below 20 % from 41 s
    if s < 90:
        return 21.5 - 0.3 * (s - 46)  # back into the band, below again, critical from 85 s
    return 80.0  # charged


def scenario() -> list[Step]:
    """Every rule on two vehicles, in one time-ordered stream with watermark ticks."""
    steps: list[Step] = []
    for s in range(110):
        speed = 85.0 if s == 20 else 75.0 if 5 <= s < 25 else 40.0
        steps.append(telemetry(s, speed=speed, battery=v1_battery(s)))
        if s < 40 or s >= 100:  # v2 is silent from 40 s to 100 s
            steps.append(telemetry(s, vehicle="v2", speed=66.0 if s % 7 else 45.0, battery=50))
        if s in (12, 13, 30):
            steps.append(perception(s + 0.5, distance=5.0 if s == 13 else 9.0))
            steps.append(perception(s + 0.5, vehicle="v2", distance=30))
        steps.append(Tick(s + 0.9))
    return steps


def test_scenario_exercises_every_rule() -> None:
    engine, transitions = run(scenario())
    assert {t.rule for t in transitions} == {
        SPEED_VIOLATION,
        LOW_BATTERY,
        COLLISION_RISK,
        VEHICLE_SILENT,
    }
    kinds = {(t.from_state, t.to_state) for t in transitions}
    assert kinds == {
        (None, "pending"),
        (None, "firing"),
        ("pending", "firing"),
        ("pending", "resolved"),
        ("firing", "firing"),
        ("firing", "resolved"),
    }
    assert engine.open_count() == 1  # v2's last speed violation is pending


def test_replaying_old_events_does_not_refire_or_renotify() -> None:
    steps = scenario()
    engine, _ = run(steps)
    before = engine.open_count()
    feed(engine, steps)
    feed(engine, [s for s in steps if not isinstance(s, Tick)])
    alerts, transitions = engine.take_changes()
    assert transitions == []
    assert alerts == []
    assert engine.open_count() == before


def test_replay_into_restored_engine_does_not_refire() -> None:
    steps = scenario()
    engine = AlertEngine(RULES)
    feed(engine, steps)
    stored = Store()
    stored.apply(engine.take_changes()[0])
    restarted = AlertEngine(RULES)
    restarted.load(stored.rows_for_load(), stored.last_telemetry(steps))
    feed(restarted, [s for s in steps if not isinstance(s, Tick)])
    assert restarted.take_changes() == ([], [])


# --------------------------------------------------------------------------- restore


class Store:
    """The alerts table as the writer keeps it: one row per alert, by alert_id."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}

    def apply(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            if alert.alert_id is None:
                alert.alert_id = len(self.rows) + 1
            row = dict(zip(ALERT_COLUMNS, alert.values(), strict=True))
            self.rows[alert.alert_id] = {
                **row,
                "alert_id": alert.alert_id,
                "acked_by": "ops",
                "acked_at": None,
                "ack_until": None,
                "updated_at": T0,
            }

    def rows_for_load(self) -> list[Alert]:
        """Open alerts plus the latest resolved one of each (vehicle, rule)."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for row in sorted(self.rows.values(), key=lambda r: r["first_seen"]):
            latest[(row["vehicle_id"], row["rule"])] = row
        return [alert_from_row(row) for row in latest.values()]

    @staticmethod
    def last_telemetry(steps: Iterable[Step]) -> dict[str, datetime | None]:
        """vehicles.last_seen as the writer stores it."""
        seen: dict[str, datetime | None] = {}
        for step in steps:
            if isinstance(step, Telemetry):
                seen[step.vehicle_id] = step.time
            elif isinstance(step, WireModel):
                seen.setdefault(step.vehicle_id, None)
        return seen


def persisted_run(steps: Sequence[Step], split: int) -> list[tuple[Any, ...]]:
    """Run steps[:split] on one engine, persist, restore a second engine and run the rest."""
    first = AlertEngine(RULES)
    feed(first, steps[:split])
    alerts, transitions = first.take_changes()
    store = Store()
    store.apply(alerts)
    second = AlertEngine(RULES)
    second.load(store.rows_for_load(), store.last_telemetry(steps[:split]))
    assert second.open_count() == first.open_count()
    assert second.take_changes() == ([], [])
    feed(second, steps[split:])
    _, more = second.take_changes()
    return [
        (seconds_of(t.time), t.vehicle_id, t.rule, t.from_state, t.to_state, t.severity, t.value)
        for t in [*transitions, *more]
    ]


def test_restore_from_rows_continues_exactly_at_every_split_point() -> None:
    steps = scenario()
    _, whole = run(steps)
    expected = [
        (seconds_of(t.time), t.vehicle_id, t.rule, t.from_state, t.to_state, t.severity, t.value)
        for t in whole
    ]
    for split in range(0, len(steps) + 1, 3):
        assert persisted_run(steps, split) == expected, f"split at step {split}"


def test_restored_pending_speed_alert_fires_on_time() -> None:
    row = {
        "alert_id": 7,
        "vehicle_id": "v1",
        "rule": SPEED_VIOLATION,
        "state": "pending",
        "severity": "warning",
        "first_seen": at(0),
        "last_seen": at(4),
        "fired_at": None,
        "clear_since": None,
        "resolved_at": None,
        "breach_count": 5,
        "value": 12.0,
        "summary": "62 km/h in a 50 zone",
    }
    engine = AlertEngine(RULES)
    engine.load([alert_from_row(row)])
    assert engine.open_count() == 1
    feed(engine, speeds([(3, 62.0), (4, 62.0)]))  # already judged before the restart
    feed(engine, speeds((s, 61.0) for s in range(5, 10)))
    assert engine.take_changes()[1] == []
    feed(engine, speeds([(10, 61.0)]))
    (alert,), (transition,) = engine.take_changes()
    assert (seconds_of(transition.time), transition.from_state, transition.to_state) == (
        10,
        "pending",
        "firing",
    )
    assert (alert.alert_id, alert.breach_count, alert.value) == (7, 11, 12.0)


def test_restored_firing_speed_alert_keeps_its_clear_run() -> None:
    alert = Alert(
        vehicle_id="v1",
        rule=SPEED_VIOLATION,
        state="firing",
        severity="warning",
        first_seen=at(0),
        last_seen=at(11),
        fired_at=at(10),
        clear_since=at(12),
        breach_count=12,
        value=15.0,
        alert_id=3,
    )
    engine = AlertEngine(RULES)
    engine.load([alert])
    feed(engine, speeds([(16, 40.0)]))
    assert engine.take_changes() == ([], [])
    feed(engine, speeds([(17, 40.0)]))
    _, (transition,) = engine.take_changes()
    assert (seconds_of(transition.time), transition.to_state) == (17, "resolved")


def test_load_ignores_vehicles_already_tracked_and_records_nothing() -> None:
    engine, _ = run(speeds([(0, 62.0)]))
    stale = Alert("v1", SPEED_VIOLATION, "firing", "critical", at(-100), at(-90), at(-95))
    other = Alert("v2", LOW_BATTERY, "firing", "warning", at(-100), at(-90), at(-100))
    engine.load([stale, other], {"v1": at(-90), "v3": None})
    assert engine.open_count() == 2
    assert engine.unknown_vehicles(["v1", "v2", "v3", "v4"]) == {"v4"}
    assert engine.take_changes() == ([], [])
    feed(engine, speeds([(1, 40.0)]))
    _, (transition,) = engine.take_changes()
    assert (transition.from_state, transition.to_state) == ("pending", "resolved")


def test_forget_drops_state_and_open_count() -> None:
    engine, _ = run([*speeds([(0, 62.0)]), perception(0, vehicle="v2"), perception(1)])
    assert engine.open_count() == 3
    engine.forget(["v1", "unknown"])
    assert engine.open_count() == 1
    assert engine.unknown_vehicles(["v1", "v2"]) == {"v1"}


def test_changed_alerts_are_deduplicated_in_order_of_first_change() -> None:
    engine, _ = run([])
    feed(engine, [*batteries([19, 18, 17]), perception(3), perception(10)])
    alerts, transitions = engine.take_changes()
    assert [(a.rule, a.state) for a in alerts] == [
        (LOW_BATTERY, "firing"),
        (COLLISION_RISK, "resolved"),
        (COLLISION_RISK, "firing"),
    ]
    assert len(transitions) == 4
    assert engine.take_changes() == ([], [])


ROW = {
    "alert_id": 1,
    "vehicle_id": "v1",
    "rule": LOW_BATTERY,
    "state": "firing",
    "severity": "warning",
    "first_seen": datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))),
    "last_seen": at(1),
    "fired_at": at(0),
    "clear_since": None,
    "resolved_at": None,
    "breach_count": 2,
    "value": 18,
    "summary": "battery 18 %",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": "open"}, "alerts.state 'open'"),
        ({"severity": "fatal"}, "alerts.severity 'fatal'"),
        ({"last_seen": datetime(2026, 3, 1)}, "alerts.last_seen must be a timezone-aware"),
    ],
)
def test_alert_from_row_rejects_bad_rows(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        alert_from_row({**ROW, **change})


def test_alert_from_row_normalises_to_utc() -> None:
    alert = alert_from_row(ROW)
    assert alert.first_seen == T0 and alert.first_seen.tzinfo == timezone.utc
    assert (alert.value, alert.alert_id, alert.is_open) == (18.0, 1, True)


def test_collision_clear_zero_keeps_one_alert_per_frame() -> None:
    rules = RuleSettings(ttc_clear_s=0)
    _, transitions = run([perception(0), perception(0, distance=5), telemetry(0.1)], rules)
    assert changes(transitions) == [
        (0, COLLISION_RISK, None, "firing"),
        (0, COLLISION_RISK, "firing", "resolved"),
    ]
    assert transitions[0].alert.breach_count == 2


def test_restored_silence_ends_with_any_later_telemetry() -> None:
    silent = Alert(
        vehicle_id="v1",
        rule=VEHICLE_SILENT,
        state="firing",
        severity="warning",
        first_seen=at(0),
        last_seen=at(60),  # the watermark ran ahead of this vehicle's partition
        fired_at=at(30),
        value=60.0,
        alert_id=4,
    )
    engine = AlertEngine(RULES)
    engine.load([silent])
    feed(engine, [telemetry(40)])
    (alert,), (transition,) = engine.take_changes()
    assert (transition.to_state, seconds_of(alert.resolved_at), alert.value) == (
        "resolved",
        40,
        40.0,
    )


def test_silence_is_judged_from_loaded_last_telemetry() -> None:
    engine = AlertEngine(RULES)
    engine.load([], {"v9": at(0), "v8": None})
    feed(engine, [Tick(29)])
    assert engine.take_changes() == ([], [])
    feed(engine, [Tick(30)])
    (alert,), _ = engine.take_changes()
    assert (alert.vehicle_id, seconds_of(alert.first_seen)) == ("v9", 0)


def test_silence_after_restore_counts_from_the_latest_judged_telemetry() -> None:
    speeding = Alert(
        vehicle_id="v1",
        rule=SPEED_VIOLATION,
        state="firing",
        severity="warning",
        first_seen=at(0),
        last_seen=at(11),
        fired_at=at(10),
        clear_since=at(12),  # a compliant sample at 12 s was judged
        alert_id=3,
    )
    engine = AlertEngine(RULES)
    engine.load([speeding])
    feed(engine, [Tick(41.5)])
    assert engine.take_changes() == ([], [])
    feed(engine, [Tick(42)])
    (alert,), _ = engine.take_changes()
    assert (alert.rule, seconds_of(alert.first_seen)) == (VEHICLE_SILENT, 12)


def test_restored_collision_alert_ignores_older_perception() -> None:
    risk = Alert(
        vehicle_id="v1",
        rule=COLLISION_RISK,
        state="firing",
        severity="critical",
        first_seen=at(8),
        last_seen=at(10),
        fired_at=at(8),
        breach_count=3,
        value=1.4,
        alert_id=9,
    )
    engine = AlertEngine(RULES)
    engine.load([risk])
    feed(engine, [perception(9, distance=3.0)])
    assert engine.take_changes() == ([], [])
    feed(engine, [perception(11, distance=3.0), Tick(15.9)])
    (alert,), transitions = engine.take_changes()
    assert (alert.breach_count, transitions) == (4, [])
    feed(engine, [Tick(16)])
    _, (transition,) = engine.take_changes()
    assert seconds_of(transition.time) == 16


@pytest.mark.parametrize(
    "speed, limit", [(62.0, 50.0), (152.34, 50.0), (0.0, 30.0), (249.96, 130.0)]
)
def test_speed_summaries_have_the_shape_other_units_are_shown_from(
    speed: float, limit: float
) -> None:
    match = SPEED_SUMMARY.fullmatch(speed_summary(speed, limit))
    assert match is not None
    assert float(match["speed"]) == pytest.approx(speed, abs=0.05)
    assert float(match["limit"]) == pytest.approx(limit, abs=0.05)


@pytest.mark.parametrize("ttc, distance", [(1.74, 16.2), (0.0, 0.0), (1.99, 199.6)])
def test_collision_summaries_have_the_shape_other_units_are_shown_from(
    ttc: float, distance: float
) -> None:
    match = COLLISION_SUMMARY.fullmatch(collision_summary("pedestrian", ttc, distance))
    assert match is not None
    assert match["object_class"] == "pedestrian"
    assert float(match["ttc"]) == pytest.approx(ttc, abs=0.05)
    assert float(match["distance"]) == pytest.approx(distance, abs=0.5)
