"""Numbering layer: which destination a number reaches and whether that is international."""

from tollguard.numbering.plan import (
    Destination,
    DestinationTable,
    DialPlan,
    default_rules_dir,
    load_default_dial_plans,
    load_dial_plans,
)

__all__ = [
    "Destination",
    "DestinationTable",
    "DialPlan",
    "default_rules_dir",
    "load_default_dial_plans",
    "load_dial_plans",
]
