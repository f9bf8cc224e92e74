"""Background call traffic at a steady rate, in its own process.

    python -m bench.load --bootstrap HOST:PORT --topic calls.events --rate 20000 --seconds 15

The latency bench runs this beside the process that times the attack events,
so producing thousands of events a second never delays that process's clock
readings. Events go out in 10 ms slices, keyed by line, stamped with the
wall clock as a switch would (3 % of them international), so event time moves
as it does in production; with --envelope N, as envelopes of up to N events
per partition and slice, as a packing producer sends them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

import orjson


async def run(
    bootstrap: str, topic: str, rate: float, seconds: float, lines: int, envelope: int = 0
) -> int:
    """Send for `seconds`; `envelope` > 0 packs up to that many events per record."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    await producer.start()
    rng = random.Random(99)
    partitions = len(await producer.partitions_for(topic))
    names = [f"load-{i:06d}".encode() for i in range(lines)]
    # Whole record batches per partition and slice: this process must stay light.
    where = [(murmur2(k) & 0x7FFFFFFF) % partitions for k in names]
    sent = 0
    started = time.perf_counter()
    batches: dict[int, Any] = {}

    async def add(partition: int, key: bytes, value: bytes) -> None:
        batch = batches.get(partition) or producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            await producer.send_batch(batch, topic, partition=partition)
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
        batches[partition] = batch

    try:
        while (elapsed := time.perf_counter() - started) < seconds:
            now = int(time.time() * 1000)
            packs: dict[int, list[bytes]] = {}
            while sent < int(rate * elapsed):
                i = rng.randrange(lines)
                intl = rng.random() < 0.03
                callee = f"01044{rng.randrange(10**9)}" if intl else f"03{rng.randrange(10**8)}"
                event = {"call_id": f"load-{sent}", "ts": now, "line_id": names[i].decode()}
                event["callee"] = callee
                sent += 1
                if not envelope:
                    await add(where[i], names[i], orjson.dumps(event))
                    continue
                pack = packs.setdefault(where[i], [])
                pack.append(orjson.dumps(event))
                if len(pack) == envelope:
                    await add(where[i], names[i], b"[" + b",".join(pack) + b"]")
                    pack.clear()
            for p, pack in packs.items():
                if pack:
                    await add(p, b"pack", b"[" + b",".join(pack) + b"]")
            for p, batch in batches.items():
                await producer.send_batch(batch, topic, partition=p)
            batches.clear()
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--envelope", type=int, default=0, help="events per record (0: single)")
    args = parser.parse_args(argv)
    sent = asyncio.run(
        run(args.bootstrap, args.topic, args.rate, args.seconds, args.lines, args.envelope)
    )
    print(f"load: {sent} events in {args.seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
