"""Plain Faust pipelines over the same topic, as baselines for the worker.

    python -m bench.faust_baselines {windowed,take} --broker HOST:PORT --topic T --expected N

* windowed: the naive design, one event at a time into a tumbling windowed
  Table (`table[line] += 1`, `.now()`), which is what Faust's docs suggest
  for "calls per line per window";
* take: `stream.take(1000, within=1)` batches of raw bytes, `orjson.loads`
  and plain dict counters: Faust's own per-message path with almost no work.

Each runs in its own process (Faust owns the event loop and signals), reads
the topic from the start in a fresh consumer group and prints one JSON line
with its rate, measured from its first event to its N-th.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from typing import Any

import orjson


def build(kind: str, broker: str, topic: str, expected: int, partitions: int) -> Any:
    import faust

    app = faust.App(
        f"bench-{kind}-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{broker}",
        broker_session_timeout=10,
        topic_partitions=partitions,
        web_enabled=False,
        datadir=f"/tmp/tollguard-bench-faust-{uuid.uuid4().hex[:6]}",
        store="memory://",
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes)
    state = {"n": 0, "t0": 0.0}

    def tick(n: int) -> None:
        if state["n"] == 0:
            state["t0"] = time.perf_counter()
        state["n"] += n
        if state["n"] >= expected:
            rate = state["n"] / (time.perf_counter() - state["t0"])
            print(
                orjson.dumps(
                    {"pipeline": kind, "events": state["n"], "events_per_s": rate}
                ).decode(),
                flush=True,
            )
            os._exit(0)

    if kind == "windowed":
        counts = app.Table("calls", default=int, partitions=partitions).tumbling(600, expires=3600)

        @app.agent(source)
        async def windowed(stream: Any) -> None:
            async for value in stream:
                line = orjson.loads(value)["line_id"]
                counts[line] += 1
                if counts[line].now() > 40:
                    pass  # a real pipeline would alert here
                tick(1)

    else:
        totals: dict[str, int] = {}

        @app.agent(source)
        async def take(stream: Any) -> None:
            async for batch in stream.take(1000, within=1):
                for value in batch:
                    line = orjson.loads(value)["line_id"]
                    totals[line] = totals.get(line, 0) + 1
                tick(len(batch))

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["windowed", "take"])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    app = build(args.kind, args.broker, args.topic, args.expected, args.partitions)
    from faust import Worker

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    return 1  # the agent exits the process when done


if __name__ == "__main__":
    sys.exit(main())
