"""Live calls per line from answer and release events (shared by `concurrent` and `long_call`).

A call is live from its answer until its release. Releases get lost (a
switch restart, a dropped message), so a call live for longer than the rule's
`release_timeout` is forgotten the next time the line answers a call: the
counter cannot leak upwards forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from msgspec import Struct, field


@dataclass(frozen=True, slots=True)
class LiveParams:
    release_timeout_ms: int = 4 * 3_600_000


class LiveCalls(Struct, tag=True, array_like=True, gc=False):
    # call id -> answer time; insertion order is (nearly) answer order
    calls: dict[str, int] = field(default_factory=dict)
    # call id -> destination tag, for rules that report on one call (long_call)
    tags: dict[str, str] | None = None

    def answer(self, call_id: str, ts: int, timeout_ms: int, tag: str = "") -> None:
        calls = self.calls
        tags = self.tags
        oldest_ok = ts - timeout_ms
        while calls:
            first = next(iter(calls))
            if calls[first] > oldest_ok:
                break
            del calls[first]
            if tags is not None:
                tags.pop(first, None)
        if call_id not in calls:
            calls[call_id] = ts
            if tags is not None:
                tags[call_id] = tag

    def release(self, call_id: str) -> int | None:
        """The answer time of the released call, if it was live."""
        if self.tags is not None:
            self.tags.pop(call_id, None)
        return self.calls.pop(call_id, None)

    def __len__(self) -> int:
        return len(self.calls)

    def evidence(self) -> tuple[int, int, dict[str, int]]:
        """First and last answer time of the calls still up (kinds' `evidence`)."""
        times = self.calls.values()
        return (min(times), max(times), {}) if times else (0, 0, {})
