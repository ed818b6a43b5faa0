"""Measure audit-log appends per second with durability on, and the time to verify a large log, on SQLite and
PostgreSQL side by side in one run.

Run: python bench/audit_throughput.py [--records 1000000] [--single 2000] [--batched 50000] [--batch-size 500]
                                      [--writers 4] [--postgres URL] [--dir DIR]

PostgreSQL is measured when ``--postgres`` (or ``RAIL_TEST_POSTGRES_URL``) names a database whose role may
create schemas; each measurement gets a fresh schema, dropped afterwards (``eval "$(.ci/postgres.sh start)"``
gives a throwaway one). Every append is durable when it returns (SQLite synchronous=FULL in WAL mode,
PostgreSQL synchronous_commit=on); the large log for the verify measurement is built with synchronous
"normal" to save time, which does not change what verification reads. Each figure is printed with its ratio
against the targets (>= 5,000 appends/s, <= 10 s per 1,000,000 records verified).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rail.audit import AuditLog, AuditRecord, BufferedSink, canonical_json, verify_log

APPEND_TARGET = 5_000.0
VERIFY_TARGET_S = 10.0
VERIFY_TARGET_RECORDS = 1_000_000

_LABELS = ("toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")


def sample_record(i: int) -> AuditRecord:
    """Return a record shaped like one the gate writes (scores for both texts, a violation, provenance)."""
    blocked = i % 10 == 0
    scores = {stage: {label: round((i * 7919 + k * 104729) % 1000 / 1000, 4)
                      for k, label in enumerate(_LABELS)} for stage in ("prompt", "output")}
    violation = {"rule": "no-medical-advice", "restriction": "l", "licence": "bigscience-bloom-rail-1.0",
                 "stage": "input", "action": "block", "severity": "high",
                 "reason": "prompt asks for medical results interpretation", "span": [12, 40]}
    return AuditRecord(
        request_id=f"req-{i:08d}", deployment="support-bot", model="bigscience/bloomz-560m",
        model_revision="a2845d7e13dd12efae154a9f1c63fcc2e0cc4b05", provider="transformers",
        params={"max_tokens": 64, "temperature": 0.7, "top_p": 0.9, "top_k": 50, "seed": i,
                "do_sample": True},
        input_tokens=23, output_tokens=0 if blocked else 57, finish_reason="stop",
        verdict="blocked" if blocked else "allowed", violations=(violation,) if blocked else (),
        scores=scores, language="en",
        provenance=None if blocked else {"generator": "bigscience/bloomz-560m", "digital_source_type":
                                         "trainedAlgorithmicMedia", "disclosure": True, "watermark": None},
        policy_id="bigscience-bloom-rail-1.0", policy_sha256="0" * 64, licence="bigscience-bloom-rail-1.0",
        durations_ms={"total": 812.4, "input_checks": 1.2, "scoring": 40.1, "generate": 760.3,
                      "output_checks": 1.1, "attribution": 0.4},
        prompt=f"Customer question number {i}: how do I reset my router password after a firmware update?",
        output=None if blocked else "Hold the reset button for ten seconds, then sign in with the default "
                                    "password printed on the label and choose a new one.",
    )


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


class Stores:
    """Hand out fresh, empty log targets: files in a temporary directory, schemas in a PostgreSQL database."""

    def __init__(self, tmp: Path, postgres: str | None) -> None:
        self.tmp, self.postgres = tmp, postgres

    def names(self) -> list[str]:
        return ["sqlite", "postgresql"] if self.postgres else ["sqlite"]

    @contextmanager
    def fresh(self, store: str) -> Iterator[str]:
        if store == "sqlite":
            yield str(self.tmp / f"{uuid.uuid4().hex}.db")
            return
        import psycopg

        assert self.postgres is not None
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in self.postgres else "?"
        try:
            yield f"{self.postgres}{separator}options=-csearch_path%3D{schema}"
        finally:
            with psycopg.connect(self.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _append(target: str, count: int, batch: int, start: object) -> None:
    """Run one writer process: wait for the start signal, then append ``count`` records, ``batch`` a call."""
    records = [sample_record(i) for i in range(count)]
    log = AuditLog(target, privacy="full")
    log.head()  # connect before the clock starts
    start.wait()  # type: ignore[attr-defined]
    for i in range(0, count, batch):
        log.append_many(records[i: i + batch])
    log.close()


def writers_rate(target: str, writers: int, count: int, batch: int) -> float:
    """Appends per second of ``writers`` processes appending ``count`` records in all to one log."""
    AuditLog(target, privacy="full").close()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    share = count // writers
    processes = [context.Process(target=_append, args=(target, share, batch, start)) for _ in range(writers)]
    for process in processes:
        process.start()
    time.sleep(3)  # let every writer build its records and connect
    began = time.perf_counter()
    start.set()
    for process in processes:
        process.join()
        assert process.exitcode == 0, "a writer process failed"
    elapsed = time.perf_counter() - began
    result = verify_log(target)
    assert result.ok and result.size == share * writers, result.summary()
    return rate(share * writers, elapsed)


def single_rate(target: str, records: list[AuditRecord]) -> float:
    log = AuditLog(target, privacy="full")
    start = time.perf_counter()
    for record in records:
        log.emit(record)
    elapsed = time.perf_counter() - start
    log.close()
    return rate(len(records), elapsed)


def batched_rate(target: str, records: list[AuditRecord], batch: int) -> float:
    log = AuditLog(target, privacy="full")
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        log.append_many(records[i: i + batch])
    elapsed = time.perf_counter() - start
    log.close()
    return rate(len(records), elapsed)


def buffered_rate(target: str, records: list[AuditRecord], batch: int) -> float:
    log = AuditLog(target, privacy="full")
    start = time.perf_counter()
    with BufferedSink(log, max_records=batch, max_delay_s=0.2) as sink:
        for record in records:
            sink.emit(record)
    elapsed = time.perf_counter() - start
    log.close()
    return rate(len(records), elapsed)


def verify_time(target: str, count: int, pool: list[AuditRecord]) -> tuple[float, float]:
    """Build a log of ``count`` records; return (seconds to build, seconds to verify)."""
    log = AuditLog(target, privacy="full", synchronous="normal")
    start = time.perf_counter()
    for i in range(0, count, len(pool)):
        log.append_many(pool[: min(len(pool), count - i)])
    build = time.perf_counter() - start
    log.close()
    start = time.perf_counter()
    result = verify_log(target)
    elapsed = time.perf_counter() - start
    assert result.ok and result.size == count, result.summary()
    return build, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=VERIFY_TARGET_RECORDS, help="records to verify")
    parser.add_argument("--single", type=int, default=2_000, help="records appended one commit each")
    parser.add_argument("--batched", type=int, default=50_000, help="records appended in batches")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--writers", type=int, default=4, help="processes appending to one log at once")
    parser.add_argument("--postgres", default=os.environ.get("RAIL_TEST_POSTGRES_URL"),
                        help="PostgreSQL URL whose role may create schemas (default: RAIL_TEST_POSTGRES_URL)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to put the SQLite logs (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        stores = Stores(Path(tmp), args.postgres)
        records = [sample_record(i) for i in range(max(args.single, args.batched))]
        print(f"record size: {len(canonical_json(records[0].to_dict()))} bytes of canonical JSON; "
              f"stores: {', '.join(stores.names())}")
        rows: list[tuple[str, dict[str, float], str]] = []

        def measure(name: str, run: Callable[[str], float], unit: str) -> None:
            results = {}
            for store in stores.names():
                with stores.fresh(store) as target:
                    results[store] = run(target)
            rows.append((name, results, unit))
            line = "   ".join(f"{store} {value:>10,.1f}" for store, value in results.items())
            print(f"{name:<52} {line}", flush=True)

        measure("appends/s, single emit, 1 writer", lambda t: single_rate(t, records[: args.single]), "rate")
        measure(f"appends/s, single emit, {args.writers} writers",
                lambda t: writers_rate(t, args.writers, args.single, 1), "rate")
        measure(f"appends/s, append_many ({args.batch_size}), 1 writer",
                lambda t: batched_rate(t, records[: args.batched], args.batch_size), "rate")
        measure(f"appends/s, append_many ({args.batch_size}), {args.writers} writers",
                lambda t: writers_rate(t, args.writers, args.batched, args.batch_size), "rate")
        measure("appends/s, BufferedSink.emit, 1 writer",
                lambda t: buffered_rate(t, records[: args.batched], args.batch_size), "rate")
        builds: dict[str, float] = {}

        def verify(target: str) -> float:
            build, elapsed = verify_time(target, args.records, records[:10_000])
            builds[target] = build
            return elapsed

        measure(f"verify {args.records:,} records (s)", verify, "seconds")

        print()
        header = "".join(f"{store:>22}" for store in stores.names())
        print(f"{'':<52}{header}")
        for name, results, unit in rows:
            cells = []
            for value in results.values():
                if unit == "rate":
                    cells.append(f"{value:>10,.0f} x{value / APPEND_TARGET:>5.2f}     ")
                else:
                    scaled = value * VERIFY_TARGET_RECORDS / args.records
                    cells.append(f"{value:>8.2f} s x{scaled / VERIFY_TARGET_S:>5.2f}     ")
            print(f"{name:<52}" + "".join(f"{c:>22}" for c in cells))
        print(f"(x = ratio to the target: appends/s over {APPEND_TARGET:,.0f}; verify time, scaled to "
              f"{VERIFY_TARGET_RECORDS:,} records, over the {VERIFY_TARGET_S:.0f} s budget)")
        for target, build in builds.items():
            store = "postgresql" if target.startswith("postgres") else "sqlite"
            print(f"built the {args.records:,}-record {store} log in {build:.1f} s "
                  f"({rate(args.records, build):,.0f} records/s, synchronous normal)")


if __name__ == "__main__":
    main()
