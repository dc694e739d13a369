"""The fleet simulator: a pure, seeded, clock-injected model and the runner that produces it.

    fleet = Fleet(vehicles=25, seed=7, start=now - timedelta(hours=3))
    run(fleet, producer, mode=Mode.REALTIME, stop=stop_event)  # catches up, then 1 Hz

or, without a producer, ``fleet.step(fleet.next_time)`` / ``backfill(fleet, duration)``.
"""

from fleetwatch.sim.fleet import TICK, Fleet, Vehicle, VehicleState, backfill
from fleetwatch.sim.runner import Clock, Mode, Progress, SystemClock, run

__all__ = [
    "TICK",
    "Clock",
    "Fleet",
    "Mode",
    "Progress",
    "SystemClock",
    "Vehicle",
    "VehicleState",
    "backfill",
    "run",
]
