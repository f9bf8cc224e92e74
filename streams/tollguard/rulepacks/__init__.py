"""Rule packs: loading, validation and versioning."""

from tollguard.rulepacks.loader import (
    PackProblem,
    RulePackError,
    load_pack,
    load_pack_text,
    parse_duration_ms,
)

__all__ = ["PackProblem", "RulePackError", "load_pack", "load_pack_text", "parse_duration_ms"]
