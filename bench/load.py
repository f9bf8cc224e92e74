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
import os
import random
import sys
import time
from typing import Any


async def run(
    bootstrap: str,
    topic: str,
    rate: float,
    seconds: float,
    lines: int,
    envelope: int = 0,
    warm: bool = False,
) -> int:
    """Send for `seconds`; `envelope` > 0 packs up to that many events per record.

    With `warm`, one event per line goes out first, as fast as it can: the
    worker then knows every line before the steady load starts, as a worker
    that has been running does.
    """
    from aiokafka import AIOKafkaProducer

    from tollguard.adapters.packer import partition_for

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    await producer.start()
    partitions = len(await producer.partitions_for(topic))
    names = [f"load-{i:06d}".encode() for i in range(lines)]
    where = [partition_for(k.decode(), partitions) for k in names]
    # This process shares the machine with the worker it loads, so the loop
    # only formats and appends: random draws are made before the clock starts
    # (a pool long enough that a line repeats a number only every ~14 s at
    # 20,000 events/s), events are formatted as bytes, and whole record
    # batches go out per partition and 10 ms slice.
    rng = random.Random(99)
    picks = [rng.randrange(lines) for _ in range(_POOL)]
    callees = [_callee(rng) for _ in range(_POOL)]
    sent = 0
    batches: dict[int, Any] = {}
    full: list[tuple[int, Any]] = []

    def add(partition: int, key: bytes, value: bytes) -> None:
        batch = batches.get(partition) or producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            full.append((partition, batch))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
        batches[partition] = batch

    async def flush_slice() -> None:
        for p, batch in [*full, *batches.items()]:
            await producer.send_batch(batch, topic, partition=p)
        full.clear()
        batches.clear()

    try:
        if warm:
            now = int(time.time() * 1000)
            for i, name in enumerate(names):
                add(where[i], name, _EVENT % (b"warm", i, now, name, b"0312345678"))
            await flush_slice()
            await producer.flush()
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            now = int(time.time() * 1000)
            packs: dict[int, list[bytes]] = {}
            due = int(rate * elapsed)
            while sent < due:
                i = picks[sent % _POOL]
                value = _EVENT % (b"load", sent, now, names[i], callees[sent % _POOL])
                sent += 1
                if not envelope:
                    add(where[i], names[i], value)
                    continue
                pack = packs.setdefault(where[i], [])
                pack.append(value)
                if len(pack) == envelope:
                    add(where[i], names[i], b"[" + b",".join(pack) + b"]")
                    pack.clear()
            for p, pack in packs.items():
                if pack:
                    add(p, b"pack", b"[" + b",".join(pack) + b"]")
            await flush_slice()
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


_POOL = 1 << 18
_EVENT = b'{"call_id":"%s-%d","ts":%d,"line_id":"%s","callee":"%s"}'


def _callee(rng: random.Random) -> bytes:
    """A valid dialled number: Tokyo, or 3 % of the time the UK (010 44 ...)."""
    if rng.random() < 0.03:
        return f"01044{rng.randrange(10**9, 10**10)}".encode()
    return f"03{rng.randrange(10**7, 10**8)}".encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--envelope", type=int, default=0, help="events per record (0: single)")
    parser.add_argument("--warm", action="store_true", help="first one event per line, at once")
    args = parser.parse_args(argv)
    # A stand-in for switches on other machines: it yields the CPU to the
    # broker and the worker it shares two cores with, rather than compete.
    os.nice(10)
    sent = asyncio.run(
        run(
            args.bootstrap,
            args.topic,
            args.rate,
            args.seconds,
            args.lines,
            args.envelope,
            args.warm,
        )
    )
    print(f"load: {sent} events in {args.seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
