"""Measure ``rail serve`` over loopback against the bare backend, side by side in one run.

Targets, each its own process on 127.0.0.1:

- ``bare`` — the same tiny BLOOM behind the thinnest OpenAI-shaped endpoint this script can write: one
  ``generate`` per request in one model thread; no checks, no scores, no attribution, no audit;
- ``gated, no batching`` — ``rail serve --max-batch 1``: every gate step, detoxify scoring of prompt and
  output (tiny detoxify), disclosure, provenance, and a durable audit append (SQLite, fsync) before the
  response goes out;
- ``gated`` — ``rail serve`` as shipped (requests that arrive together share a generate call and a commit);
- with ``--upstream URL`` (an OpenAI-compatible engine such as llama.cpp from scripts/upstream-llamacpp.sh)
  also ``engine`` (called directly) and ``gated engine`` (rail serve --backend openai in front of it).

For 1, 8 and 32 concurrent clients, each target gets at most ``--requests`` requests and ``--seconds``
seconds, in ``--rounds`` turns (targets alternate, so a change in the machine's load hits them alike),
after one warm-up request each. Prints requests
per second, latency p50/p99 and each gated target's rate over its backend alone (bare, or engine).
Then checks that the audit log holds exactly one record per answered request, kills the gated server
with SIGKILL under load, verifies the log with ``rail audit verify``, restarts the server on it and
checks the chain continues.

The tiny model generates quickly, so these numbers weigh what rail adds (HTTP, checks, detoxify scoring,
audit) far more than a real BLOOM would, where generation dominates. The load generator shares the
machine's cores with the servers; each server runs torch with ``--torch-threads`` intra-op threads (1 by
default: on tiny tensors, a second thread waiting for a busy core costs more than it gives).

    python bench/server.py                                  # about 2-4 minutes on 2 cores
    python bench/server.py --requests 100 --seconds 10 --concurrency 1 8 32
    python bench/server.py --upstream http://127.0.0.1:8090 --max-tokens 8
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

KEY = "bench-key-0123456789abcdef"
PROMPT = "Write a short note about the sea."
DECLARATION = """\
name: bench-assistant
purpose: General-purpose writing assistant that drafts short texts for people who review them.
domains: [general]
audience: [adults]
automated_decisions: {enabled: false, legal_effect: false, human_review: true}
disclosure: {mode: visible, position: suffix}
languages: [en]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bare_server(port: int, model: str) -> None:
    """Serve ``model`` without rail: one generate per request, OpenAI's completion shape."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from rail.generation import GenerationParams, load_model

    generator = load_model(model)
    worker = ThreadPoolExecutor(max_workers=1)

    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        params = GenerationParams(max_new_tokens=int(body.get("max_tokens", 16)))
        [c] = await asyncio.get_running_loop().run_in_executor(
            worker, lambda: generator.generate([body["prompt"]], params)
        )
        return JSONResponse(
            {
                "id": "cmpl-bare",
                "object": "text_completion",
                "created": int(time.time()),
                "model": "bare",
                "choices": [{"index": 0, "text": c.text, "logprobs": None, "finish_reason": "length"}],
                "usage": {
                    "prompt_tokens": c.input_tokens,
                    "completion_tokens": c.output_tokens,
                    "total_tokens": c.input_tokens + c.output_tokens,
                },
            }
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[Route("/v1/completions", completions, methods=["POST"]), Route("/health", health)]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@dataclass
class Target:
    name: str
    url: str
    proc: subprocess.Popen[bytes] | None = None


def _start(name: str, args: list[str], env: dict[str, str], log: Path, health: str = "/health") -> Target:
    port = _free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([*args, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited: see {log}")
        try:
            if httpx.get(url + health, timeout=1).status_code in (200, 401):
                return Target(name, url, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{name} did not start: see {log}")


@dataclass
class Cell:
    ok: int
    errors: int
    seconds: float
    latencies: list[float]

    def add(self, other: Cell) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.seconds += other.seconds
        self.latencies += other.latencies

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def load(
    url: str,
    model: str | None,
    concurrency: int,
    count: int,
    seconds: float,
    max_tokens: int,
    answered: list[str] | None = None,
    stop: threading.Event | None = None,
) -> Cell:
    """Send up to ``count`` requests from ``concurrency`` clients for at most ``seconds``."""
    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + seconds
    body: dict[str, Any] = {"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0}
    if model:
        body["model"] = model

    def worker() -> None:
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as client:
            while True:
                with lock:
                    if issued[0] >= count or time.monotonic() > deadline or (stop and stop.is_set()):
                        return
                    issued[0] += 1
                t0 = time.perf_counter()
                try:
                    r = client.post(url + "/v1/completions", json=body)
                except httpx.HTTPError:
                    with lock:
                        errors[0] += 1
                    if stop is not None:
                        return
                    continue
                spent = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        latencies.append(spent)
                        if answered is not None and "rail" in r.json():
                            answered.append(r.json()["rail"]["results"][0]["audit"]["request_id"])
                    else:
                        errors[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Cell(len(latencies), errors[0], time.perf_counter() - started, latencies)


def _records(log: Path) -> list[Any]:
    from rail.audit import read_records

    return [record for _, record in read_records(log)]


def _verify(log: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rail.cli", "audit", "verify", str(log)], capture_output=True, text=True
    )
    return (
        f"exit {out.returncode}: {out.stdout.strip().splitlines()[0] if out.stdout.strip() else out.stderr}"
    )


# Which target each gated one is compared with: the same backend without rail.
_BASELINE = {"gated, no batching": "bare", "gated": "bare", "gated engine": "engine"}


def _model_name(target: Target) -> str | None:
    return "tiny-bloom" if target.name in ("gated, no batching", "gated") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--requests", type=int, default=150, help="at most this many requests per target and level"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="at most this long per target and level")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="turns each target takes per level")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads of each server (tiny tensors gain nothing from more)",
    )
    parser.add_argument("--upstream", help="an OpenAI-compatible engine to compare with rail in front of it")
    parser.add_argument("--upstream-context", type=int, default=32)
    parser.add_argument("--bare", metavar="MODEL", help=argparse.SUPPRESS)  # run the bare target
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_server(args.port, args.bare)
        return

    from rail.tiny import build_tiny_bloom, build_tiny_detoxify

    work = Path(tempfile.mkdtemp(prefix="rail-bench-server-"))
    model = build_tiny_bloom(work / "tiny-bloom")
    checkpoint, config_dir = build_tiny_detoxify(work / "tiny-detoxify")
    (work / "bench.yaml").write_text(DECLARATION, encoding="utf-8")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAIL_DETOXIFY_CHECKPOINT": str(checkpoint),
        "RAIL_DETOXIFY_CONFIG": str(config_dir),
        "OMP_NUM_THREADS": str(args.torch_threads),
    }
    rail = [
        sys.executable,
        "-m",
        "rail.cli",
        "serve",
        "--declaration",
        str(work / "bench.yaml"),
        "--api-key",
        KEY,
        "--log-level",
        "warning",
        "--max-concurrent",
        "64",
        "--max-queue",
        "64",
    ]
    gated_log = work / "gated.db"
    targets = [_start("bare", [sys.executable, __file__, "--bare", str(model)], env, work / "bare.log")]
    targets.append(
        _start(
            "gated, no batching",
            [*rail, "--model", str(model), "--max-batch", "1", "--audit-log", str(work / "unbatched.db")],
            env,
            work / "unbatched.log",
        )
    )
    targets.append(
        _start(
            "gated", [*rail, "--model", str(model), "--audit-log", str(gated_log)], env, work / "gated.log"
        )
    )
    if args.upstream:
        targets.append(Target("engine", args.upstream.rstrip("/")))
        targets.append(
            _start(
                "gated engine",
                [
                    *rail,
                    "--backend",
                    "openai",
                    "--upstream",
                    args.upstream,
                    "--upstream-context",
                    str(args.upstream_context),
                    "--audit-log",
                    str(work / "engine.db"),
                ],
                env,
                work / "engine.log",
            )
        )
    print(
        f"rail serve bench: tiny BLOOM, {args.max_tokens} new tokens greedy, loopback, {args.torch_threads} "
        f"torch thread(s) per server; ≤{args.requests} requests, ≤{args.seconds:g} s per target and level\n"
    )
    print(
        f"{'clients':>7}  {'target':<20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ok':>5} {'err':>4}  "
        "req/s vs its backend alone"
    )
    answered: dict[str, list[str]] = {t.name: [] for t in targets}
    try:
        for target in targets:  # one request each first: model loading and first-call costs stay out
            load(target.url, _model_name(target), 1, 1, 60, args.max_tokens, answered=answered[target.name])
        for concurrency in args.concurrency:
            alone: dict[str, float] = {}
            cells = {t.name: Cell(0, 0, 0.0, []) for t in targets}
            # Targets take turns in rounds, so a change in the machine's load hits them all alike.
            for _ in range(args.rounds):
                for target in targets:
                    part = load(
                        target.url,
                        _model_name(target),
                        concurrency,
                        args.requests // args.rounds,
                        args.seconds / args.rounds,
                        args.max_tokens,
                        answered=answered[target.name],
                    )
                    cells[target.name].add(part)
            for target in targets:
                cell = cells[target.name]
                base = _BASELINE.get(target.name)
                if base is None:
                    alone[target.name] = cell.rps
                ratio = f"{cell.rps / alone[base]:.2f}" if base is not None and alone.get(base) else ""
                print(
                    f"{concurrency:>7}  {target.name:<20} {cell.rps:>8.1f} {cell.pct(0.5):>8.1f} "
                    f"{cell.pct(0.99):>8.1f} {cell.ok:>5} {cell.errors:>4}  {ratio}"
                )
            print()
        gated = next(t for t in targets if t.name == "gated")
        records = _records(gated_log)
        ids = {r.request_id for r in records}
        stages = ("input_checks", "scoring", "generate", "output_checks", "attribution", "total")
        medians = {s: statistics.median(r.durations_ms.get(s, 0.0) for r in records) for s in stages}
        print(
            "gated request, median ms per step (the gate's own durations): "
            + ", ".join(f"{s} {v:.1f}" for s, v in medians.items())
        )
        print(
            f"audit: {len(records)} records for {len(answered['gated'])} answered gated requests; "
            f"every answered request recorded: {all(i in ids for i in answered['gated'])}"
        )

        # kill -9 under load, verify, restart on the same log.
        stop = threading.Event()
        under_load = threading.Thread(
            target=load,
            args=(gated.url, "tiny-bloom", 8, 10**9, 60, args.max_tokens),
            kwargs={"answered": answered["gated"], "stop": stop},
        )
        before = len(answered["gated"])
        under_load.start()
        deadline = time.monotonic() + 30
        while len(answered["gated"]) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.05)  # kill while requests are in flight, after some have been answered
        assert gated.proc is not None
        gated.proc.send_signal(signal.SIGKILL)
        gated.proc.wait()
        stop.set()
        under_load.join()
        records = _records(gated_log)
        ids = {r.request_id for r in records}
        print(
            f"kill -9 under load after {len(answered['gated']) - before} more answers: "
            f"rail audit verify {_verify(gated_log)}; every answered request recorded: "
            f"{all(i in ids for i in answered['gated'])}"
        )
        restarted = _start(
            "gated (restarted)",
            [*rail, "--model", str(model), "--audit-log", str(gated_log)],
            env,
            work / "gated2.log",
        )
        targets.append(restarted)
        r = httpx.post(
            restarted.url + "/v1/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"prompt": PROMPT, "max_tokens": 4},
            timeout=60,
        ).json()
        seq = r["rail"]["results"][0]["audit"]["seq"]
        print(
            f"restart: first new record is #{seq} after {len(records)} "
            f"(chain continues: {seq == len(records) + 1}); rail audit verify {_verify(gated_log)}"
        )
    finally:
        for target in targets:
            if target.proc is not None and target.proc.poll() is None:
                target.proc.send_signal(signal.SIGTERM)
                try:
                    target.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    target.proc.kill()
    print(f"\nwork files: {work}")


if __name__ == "__main__":
    main()
