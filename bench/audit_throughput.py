"""Measure audit-log append throughput with durability on, and the time to verify a large log.

Run: python bench/audit_throughput.py [--records 1000000] [--single 2000] [--batched 50000] [--dir DIR]

Prints appends per second for single appends (one fsync'd commit each), append_many batches and the buffered
sink, all with synchronous=FULL in WAL mode, then the verification time for ``--records`` records, each with
its ratio against the targets (>= 5,000 appends/s, <= 10 s per 1,000,000 records verified).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=VERIFY_TARGET_RECORDS, help="records to verify")
    parser.add_argument("--single", type=int, default=2_000, help="records appended one commit each")
    parser.add_argument("--batched", type=int, default=50_000, help="records appended in batches")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the logs (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        records = [sample_record(i) for i in range(max(args.single, args.batched))]
        print(f"record size: {len(canonical_json(records[0].to_dict()))} bytes of canonical JSON")

        log = AuditLog(Path(tmp, "single.db"), privacy="full", synchronous="full")
        start = time.perf_counter()
        for record in records[: args.single]:
            log.emit(record)
        single = rate(args.single, time.perf_counter() - start)
        log.close()

        log = AuditLog(Path(tmp, "batched.db"), privacy="full", synchronous="full")
        start = time.perf_counter()
        for i in range(0, args.batched, args.batch_size):
            log.append_many(records[i: i + args.batch_size])
        batched = rate(args.batched, time.perf_counter() - start)
        log.close()

        log = AuditLog(Path(tmp, "buffered.db"), privacy="full", synchronous="full")
        start = time.perf_counter()
        with BufferedSink(log, max_records=args.batch_size, max_delay_s=0.2) as sink:
            for record in records[: args.batched]:
                sink.emit(record)
        buffered = rate(args.batched, time.perf_counter() - start)
        log.close()

        print(f"{'appends/s, single emit (1 fsync each)':<50} {single:>10,.0f}   "
              f"x{single / APPEND_TARGET:.2f} of target {APPEND_TARGET:,.0f}")
        print(f"{f'appends/s, append_many (batches of {args.batch_size})':<50} {batched:>10,.0f}   "
              f"x{batched / APPEND_TARGET:.2f} of target")
        print(f"{'appends/s, BufferedSink.emit':<50} {buffered:>10,.0f}   "
              f"x{buffered / APPEND_TARGET:.2f} of target")

        path = Path(tmp, "large.db")
        log = AuditLog(path, privacy="full", synchronous="normal")
        start = time.perf_counter()
        pool = records[:10_000]
        for i in range(0, args.records, 10_000):
            log.append_many(pool[: min(10_000, args.records - i)])
        build = time.perf_counter() - start
        log.close()
        megabytes = os.path.getsize(path) / 2**20
        print(f"built {args.records:,} records ({megabytes:,.0f} MiB) in {build:.1f} s")

        start = time.perf_counter()
        result = verify_log(path)
        elapsed = time.perf_counter() - start
        assert result.ok and result.size == args.records, result.summary()
        scaled = elapsed * VERIFY_TARGET_RECORDS / args.records
        print(f"{f'verify {args.records:,} records (s)':<50} {elapsed:>10.2f}   "
              f"{scaled / VERIFY_TARGET_S:.2f} of the {VERIFY_TARGET_S:.0f} s budget per 1,000,000 "
              f"({rate(args.records, elapsed):,.0f} records/s)")


if __name__ == "__main__":
    main()
