"""When will it be done, and what will it cost: task status events, lane velocity, the ETA,
its backtest and the cost of the open tasks (docs/forecast.md).

- :mod:`.lanes`: the lanes (default mcoda's work, review, QA), a lanes TOML file;
- :mod:`.timeline`: a task's events in time order, lane visits and samples, where it stands;
- :mod:`.velocity`, :mod:`.eta`, :mod:`.backtest`, :mod:`.cost`: pure functions over events;
- :mod:`.history`: reading events and task runs from the store;
- :mod:`.status`: writing a status event (``Ledger.task_status``, the CLI, the service);
- :mod:`.report`: the forecasts as the CLI shows them.
"""

from __future__ import annotations

from llmledger.forecast.backtest import Backtest, BacktestPoint, run_backtest
from llmledger.forecast.cost import CostForecast, forecast_cost
from llmledger.forecast.eta import Eta, LaneEta, compute_eta
from llmledger.forecast.lanes import DEFAULT_LANES, PLAN_LANES, Lane, LaneSet, load_lanes
from llmledger.forecast.timeline import Sample, StatusEvent
from llmledger.forecast.velocity import LaneVelocity, TaskRun, lane_velocities

__all__ = [
    "DEFAULT_LANES",
    "PLAN_LANES",
    "Backtest",
    "BacktestPoint",
    "CostForecast",
    "Eta",
    "Lane",
    "LaneEta",
    "LaneSet",
    "LaneVelocity",
    "Sample",
    "StatusEvent",
    "TaskRun",
    "compute_eta",
    "forecast_cost",
    "lane_velocities",
    "load_lanes",
    "run_backtest",
]
