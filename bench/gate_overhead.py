"""Measure the gate's overhead against raw ``model.generate``, side by side in one run.

Model: bloom-560m's shape (BloomConfig(vocab_size=250880, hidden_size=1024, n_layer=24, n_head=16),
559,214,592 parameters) with random weights, so no download is needed. Both sides generate exactly
``--new-tokens`` tokens greedily (min_new_tokens = max_new_tokens). The gated side runs the full request:
input checks, detoxify scoring of prompts and outputs (a tiny detoxify model built by rail.tiny — the real
classifiers cost more; the per-step line shows scoring apart), output checks, disclosure, provenance
and an audit record written to a JSON-lines file. Raw and gated repetitions alternate so
drift in machine load hits both. Prints medians and the gated/raw ratio per batch size, and beside it the
gated request's wall time over the ``model.generate`` time inside that same request: on a busy 2-core machine
run-to-run spread of generation itself (several per cent) can exceed the gate's cost, and this second ratio
isolates what the gate adds around generation.

    python bench/gate_overhead.py                 # CPU, or CUDA when present
    python bench/gate_overhead.py --batch 1 16 --reps 3 --new-tokens 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = [
    "Translate to English: Je t'aime.",
    'Suggest at least five related search terms to "Mạng neural nhân tạo".',
    "Explain in a sentence in Telugu what is backpropagation in neural networks.",
    "Write a fairy tale about a troll saving a princess from a dangerous dragon. Story (in Spanish):",
    "一个传奇的开端,一个不灭的神话,这不仅仅是一部电影。你认为这句话的立场是赞扬、中立还是批评?",
    "Quelle est la capitale de la France ?",
    "¿Cuál es la capital de Francia?",
    "Qual é a capital da França?",
    "ما هي عاصمة فرنسا؟",
    "फ्रांस की राजधानी क्या है?",
    "Summarize the following review: the food was good but the service was slow. Summary:",
    "Apa ibu kota Prancis?",
    "Mji mkuu wa Ufaransa ni upi?",
    "Write a haiku about the sea.",
    "Give three tips for writing clear documentation.",
    "What is the boiling point of water at sea level?",
]

DECLARATION = """\
name: bench-assistant
purpose: General-purpose writing assistant that drafts short texts for people who review them.
domains: [general]
audience: [adults]
automated_decisions: {enabled: false, legal_effect: false, human_review: true}
disclosure: {mode: visible, position: suffix}
languages: [en, fr, es]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, BloomConfig, BloomForCausalLM

    from rail.audit import JsonlSink
    from rail.gate import GatedGenerator
    from rail.generation import GenerationParams, ModelInfo, TextGenerator
    from rail.scoring import ScorerSettings
    from rail.tiny import build_tiny_bloom, build_tiny_detoxify

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    work = Path(tempfile.mkdtemp(prefix="rail-bench-"))
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_bloom(work / "tok"), padding_side="left")
    checkpoint, config_dir = build_tiny_detoxify(work / "detoxify")

    config = BloomConfig(
        vocab_size=250880,
        hidden_size=1024,
        n_layer=24,
        n_head=16,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    torch.manual_seed(0)
    model = BloomForCausalLM(config).to(device=device, dtype=dtype).eval()
    parameters = sum(p.numel() for p in model.parameters())
    info = ModelInfo(
        model_id="bloom-560m-shape-random",
        revision=None,
        commit=None,
        licence="bigscience-bloom-rail-1.0",
        dtype=str(dtype).removeprefix("torch."),
        device=device,
        parameters=parameters,
        architecture="bloom",
        bloomz=False,
        local=True,
    )
    generator = TextGenerator(model, tokenizer, info, hygiene="off")
    (work / "deployment.yaml").write_text(DECLARATION, encoding="utf-8")
    scorer = ScorerSettings(
        model="auto",
        checkpoints=dict.fromkeys(("original", "unbiased", "multilingual"), str(checkpoint)),
        configs=dict.fromkeys(("original", "unbiased", "multilingual"), str(config_dir)),
    )
    gate = GatedGenerator(
        model=generator,
        declaration=work / "deployment.yaml",
        scorer=scorer,
        sink=JsonlSink(work / "audit.jsonl"),
    )
    print(
        f"device: {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'CPU'}, "
        f"{torch.get_num_threads()} threads), dtype {info.dtype}, parameters {parameters:,}, "
        f"new tokens {args.new_tokens}, greedy, reps {args.reps}"
    )

    n = args.new_tokens
    params = GenerationParams(max_new_tokens=n, min_new_tokens=n)

    def raw(prompts: list[str]) -> None:
        batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
        with torch.inference_mode():
            out = model.generate(
                **batch,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        assert out.shape[1] - batch["input_ids"].shape[1] == n

    inner: list[float] = []  # per gated run: wall time / the model.generate time inside it

    def gated(prompts: list[str]) -> None:
        t0 = time.perf_counter()
        results = gate.generate_batch(prompts, **params.to_dict())
        wall_ms = (time.perf_counter() - t0) * 1000
        assert all(r.record.output_tokens == n for r in results if r.allowed)
        inner.append(wall_ms / results[0].record.durations_ms["generate"])

    def timed(fn: object, prompts: list[str]) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(prompts)  # type: ignore[operator]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for size in args.batch:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(size)]
        raw(prompts)
        gated(prompts)  # warm-up: loads the scorer, fills caches
        raw_s, gated_s = [], []
        inner.clear()
        for _ in range(args.reps):
            raw_s.append(timed(raw, prompts))
            gated_s.append(timed(gated, prompts))
        r, g = statistics.median(raw_s), statistics.median(gated_s)
        within = statistics.median(inner)
        last = gate.generate_batch(prompts, **params.to_dict())
        steps = {
            k: statistics.median(x.record.durations_ms.get(k, 0.0) for x in last)
            for k in ("input_checks", "scoring", "output_checks", "attribution")
        }
        print(
            f"batch {size:>3}: raw {r:8.3f} s   gated {g:8.3f} s   gated/raw {g / r:.3f}   "
            f"gated/own-generate {within:.4f}   "
            f"(gate steps, ms: " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()) + ")"
        )


if __name__ == "__main__":
    main()
