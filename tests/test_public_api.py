"""The top-level package re-exports the public API, and nothing heavy is imported to do so."""

import subprocess
import sys

import rail


def test_all_is_sorted_unique_and_importable():
    assert rail.__all__ == sorted(rail.__all__)
    assert len(set(rail.__all__)) == len(rail.__all__)
    for name in rail.__all__:
        assert name in vars(rail), f"rail.__all__ names {name}, which rail does not define"
        value = vars(rail)[name]
        if name != "__version__":
            # Each public name is rail's own class or function, re-exported from the module that defines it.
            assert value.__module__.startswith("rail."), (name, value.__module__)
            assert getattr(sys.modules[value.__module__], value.__name__) is value, name


def test_the_default_pack_screens_toxicity_at_both_stages():
    from rail.policy import PolicyEngine, load_policy

    engine = PolicyEngine(load_policy())
    assert engine.needs_scores("input") and engine.needs_scores("output")


def test_importing_rail_does_not_load_torch_or_detoxify():
    code = "import sys, rail; print(sorted({'torch', 'transformers', 'detoxify'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version_matches_the_cli():
    out = subprocess.run([sys.executable, "-m", "rail.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert rail.__version__ in out.stdout
