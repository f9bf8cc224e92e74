"""The pure detection core: no I/O, no clocks, no Kafka."""

from tollguard.engine.engine import Engine, EngineConfig, LineState
from tollguard.engine.events import CallEvent, EventError, EventParser
from tollguard.engine.rules import CountRule, Limits, Match, Rule, RulePack
from tollguard.engine.schedule import Schedule

__all__ = [
    "CallEvent",
    "CountRule",
    "Engine",
    "EngineConfig",
    "EventError",
    "EventParser",
    "Limits",
    "LineState",
    "Match",
    "Rule",
    "RulePack",
    "Schedule",
]
