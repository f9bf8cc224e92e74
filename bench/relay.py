"""The latency floor: a plain aiokafka relay from the events topic to the control topic.

    python -m bench.relay --bootstrap HOST:PORT --source calls.events --sink calls.control

The latency bench times "event readable -> block readable" twice at the same
load: through a tollguard worker, and through this relay. The relay reads every
record with the worker's consumer settings, decodes it with orjson (envelopes
too) and forwards each event of an attacked line (`lat-` prefix) as a
block-shaped record, with the worker's producer settings. It decides nothing,
so its latency is what a Python Kafka client pays on this machine and broker;
the worker's excess over it is ours.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import orjson

ATTACKED = "lat-"


async def relay(bootstrap: str, source: str, sink: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from tollguard.app.detector import FETCH_OPTIONS, PRODUCER_OPTIONS

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **FETCH_OPTIONS)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, **PRODUCER_OPTIONS
    )
    await consumer.start()
    await producer.start()
    await producer.partitions_for(sink)
    tps = [TopicPartition(source, p) for p in sorted(await producer.partitions_for(source))]
    consumer.assign(tps)
    # Positioned on the end now, so every event sent after "ready" is read.
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    print("ready", flush=True)
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for batch in fetched.values():
                for record in batch:
                    value = orjson.loads(record.value)
                    for event in value if isinstance(value, list) else (value,):
                        line = event.get("line_id", "")
                        if line.startswith(ATTACKED):
                            when = datetime.fromtimestamp(event["ts"] / 1000, UTC).isoformat()
                            block = {"action": "block", "line_id": line, "event_ts": when}
                            await producer.send(sink, orjson.dumps(block), key=line.encode())
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    args = parser.parse_args(argv)
    asyncio.run(relay(args.bootstrap, args.source, args.sink))
    return 0


if __name__ == "__main__":
    sys.exit(main())
