"""Instructions per event, counted under callgrind: a figure the VM's speed does not move.

    python -m bench.instructions [--events 100000] [--lines 10000] [--path envelopes,single]
                                 [--parts]

Worker runs on the development VM differ by ±15 % minutes apart and by half
between days, and CPU time with them, so a change of a few percent cannot be
seen in them. The number of instructions executed per event does not move.
For each path this runs the bench's traffic (`bench.throughput`'s synthetic
events: as envelopes of 500, or one event per record) through
`BatchProcessor.process` in process under `valgrind --tool=callgrind`,
twice: once deciding every event, once only loading them. The difference
over the events is what an event costs: parsing, the engine, the
processor's counting; not the Kafka client. Every event is counted, from
empty state: at the defaults a line has ten events, so a tenth of them are
a line's first. The garbage collector is off in both runs and the hash seed
fixed, so a run repeats to a few instructions an event. Needs valgrind
(Debian package `valgrind`); each path takes a few minutes.

`--parts` splits the envelope path into its steps: five runs that each go
one step further (decode the envelope, count its braces, resolve numbers,
run the engine, then the whole processor), each step's cost the difference
from the run before. The steps add up to the path's figure. It takes about
three times as long.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("envelopes", "single")
# Records per `process` call: what one fetch hands the worker, about.
ENVELOPES_PER_BATCH = 20
SINGLE_PER_BATCH = 2000
_COLLECTED = re.compile(rb"Collected : (\d+)")


def batches(
    path: str, events: int, lines: int, partitions: int = 4
) -> list[list[tuple[int, bytes]]]:
    """(partition, value) records as fetches bring them: grouped by partition within a fetch."""
    from bench.throughput import envelopes, synthetic_events
    from tollguard.adapters.packer import partition_for

    source = synthetic_events(events, lines)
    if path == "envelopes":
        records = [(p, v) for p, _, v, _ in envelopes(source, partitions, 500)]
        size = ENVELOPES_PER_BATCH
    else:
        records = [(partition_for(k.decode(), partitions), v) for k, v in source]
        size = SINGLE_PER_BATCH
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    return [sorted(chunk, key=lambda r: r[0]) for chunk in chunks]


# `--parts`: runs that each go one step further than the one before, so the
# difference between two neighbours is what that step costs.
PARTS = (
    ("decode", "msgspec decoding the envelope"),
    ("flat", "the brace count (nothing nests deeper)"),
    ("parse", "resolving numbers (dial plan, destination)"),
    ("engine", "the engine (admission, duplicates, rules, decisions)"),
    ("decide", "the processor (grouping, counting, metrics)"),
)


def child(mode: str, data: Path) -> None:
    """Load the records and take them as far as `mode` says (runs under callgrind).

    "load" stops there, "decide" is the worker's path (`BatchProcessor.process`),
    the other modes are the steps of `PARTS`.
    """
    from tollguard.app.metrics import Metrics
    from tollguard.app.processor import BatchProcessor, RawRecord
    from tollguard.numbering import DestinationTable, load_default_dial_plans
    from tollguard.rulepacks import load_pack

    gc.disable()
    offsets: dict[int, int] = {}
    work: list[list[RawRecord]] = []
    for fetch in pickle.loads(data.read_bytes()):
        records = []
        for partition, value in fetch:
            offset = offsets.get(partition, 0)
            offsets[partition] = offset + 1
            records.append(RawRecord("calls.events", partition, offset, b"k", value))
        work.append(records)
    processor = BatchProcessor(
        load_pack(ROOT / "rules" / "default.yaml"),
        load_default_dial_plans(),
        DestinationTable.load_default(),
        Metrics(),
    )
    if mode == "decide":
        for records in work:
            processor.process(records, 0)
    elif mode != "load":
        _part(mode, processor, work)


def _part(mode: str, processor: Any, work: list[list[Any]]) -> None:
    """The steps of `PARTS` before "decide", on envelopes (what the worker does, in stages)."""
    from tollguard.engine.events import _decode_events, _flat_envelope

    parser = processor.parser
    for records in work:
        runs: dict[int, list[Any]] = {}
        for record in records:
            if mode == "decode":
                _decode_events(record.value)
            elif mode == "flat":
                _flat_envelope(record.value, len(_decode_events(record.value)))
            else:
                runs.setdefault(record.partition, []).extend(parser.parse_envelope(record.value))
        if mode == "engine":
            for partition, events in runs.items():
                processor.engine(partition).process_batch(events, [])


def start(mode: str, data: Path, out: Path) -> subprocess.Popen[bytes]:
    """One child run under callgrind (runs side by side: counts do not depend on timing)."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cmd += [sys.executable, "-m", "bench.instructions", "--child", mode, str(data)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )


def collected(run: subprocess.Popen[bytes], what: str) -> int:
    """Instructions callgrind counted in a finished child run."""
    _, err = run.communicate()
    found = _COLLECTED.search(err)
    if run.returncode != 0 or found is None:
        tail = err.decode(errors="replace")[-2000:]
        raise SystemExit(f"callgrind run ({what}) failed, exit {run.returncode}:\n{tail}")
    return int(found.group(1))


def measure(
    paths: list[str], events: int, lines: int, tmp: Path, parts: bool = False
) -> dict[str, dict[str, Any]]:
    """Instructions an event per path; with `parts`, the envelope path's steps too."""
    from bench.throughput import say

    runs: dict[str, tuple[int, dict[str, subprocess.Popen[bytes]]]] = {}
    for path in paths:
        data = tmp / f"{path}.pickle"
        work = batches(path, events, lines)
        data.write_bytes(pickle.dumps(work))
        records = sum(len(fetch) for fetch in work)
        steps = [m for m, _ in PARTS] if parts and path == "envelopes" else ["decide"]
        children = {m: start(m, data, tmp / f"{path}.{m}.out") for m in ["load", *steps]}
        runs[path] = (records, children)
    say(f"counting {events} events on {', '.join(paths)} under callgrind (minutes)...")
    results: dict[str, dict[str, Any]] = {}
    try:
        for path, (records, children) in runs.items():
            counts = {mode: collected(run, f"{path}, {mode}") for mode, run in children.items()}
            results[path] = {
                "events": events,
                "records": records,
                "instructions_per_event": round((counts["decide"] - counts["load"]) / events),
            }
            say(f"{path}: {results[path]['instructions_per_event']:,} instructions an event")
            if len(counts) > 2:
                steps = list(counts.values())
                results[path]["parts"] = {
                    what: round((after - before) / events)
                    for (_, what), before, after in zip(PARTS, steps[:-1], steps[1:], strict=True)
                }
                for what, n in results[path]["parts"].items():
                    say(f"  {n:7,}  {what}")
    finally:
        for _, children in runs.values():
            for run in children.values():
                if run.poll() is None:
                    run.kill()
                    run.wait()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--path", default=",".join(PATHS), help="envelopes, single, or both")
    ap.add_argument(
        "--parts",
        action="store_true",
        help="also split the envelope path into its steps (five more runs, longer)",
    )
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DATA"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0
    paths = [p for p in args.path.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        ap.error(f"unknown path {', '.join(unknown)}: choose from {', '.join(PATHS)}")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: run scripts/install_test_tools.sh")
    with tempfile.TemporaryDirectory(prefix="tollguard-instructions-") as tmp:
        results = measure(paths, args.events, args.lines, Path(tmp), args.parts)
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout
    print(
        json.dumps(
            {
                "bench": "instructions",
                "lines": args.lines,
                "paths": results,
                "valgrind": version.strip(),
                "python": platform.python_version(),
                "machine": platform.machine(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
