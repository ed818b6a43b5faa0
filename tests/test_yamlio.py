"""Safe YAML reading: what rail accepts, what it refuses, and that every refusal names the file and line."""

import pytest

from rail.errors import ConfigError
from rail.yamlio import load_yaml, load_yaml_text, schema_problems


def test_yaml_1_2_booleans_and_dates_stay_strings():
    doc = load_yaml_text("language: no\nother: yes\nflag: true\nreleased: 2022-07-11\n")
    assert doc.data == {"language": "no", "other": "yes", "flag": True, "released": "2022-07-11"}


def test_key_order_and_lines_are_kept():
    doc = load_yaml_text("b: 1\na:\n  - x: 2\n")
    assert list(doc.data) == ["b", "a"]
    assert doc.line_of(["a", 0, "x"]) == 3
    assert doc.line_of(["a", 0, "missing"]) == 3  # nearest ancestor with a line


def _bomb(levels: int) -> str:
    text = 'n0: &n0 ["lol", "lol"]\n'
    for i in range(1, levels + 1):
        text += f"n{i}: &n{i} [*n{i - 1}, *n{i - 1}, *n{i - 1}]\n"
    return text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("a: &x {b: 1}\nc:\n  <<: *x\n", "merge keys"),
        ("a: &a [*a]\n", "recursive alias"),
        ("a: &a {b: *a}\n", "recursive alias"),
        (_bomb(15), "aliases expand the document"),
        (_bomb(40), "alias references"),
        ("a: [1,\n", "not valid YAML"),
        ("[" * 200 + "]" * 200, "nesting is deeper"),
        ("1: x\nid: a\n", "mapping keys must be text, not '1'"),
        ("null: x\n", "mapping keys must be text"),
        ("[a]: 1\n", "mapping keys must be text, not a list or mapping"),
        ("id: a\x00\n", "not valid YAML"),
    ],
)
def test_hostile_or_broken_documents_are_refused_with_a_located_message(text, message):
    with pytest.raises(ConfigError) as err:
        load_yaml_text(text, "hostile.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("hostile.yaml")


def test_a_few_aliases_are_fine():
    doc = load_yaml_text("x: &x [1, 2]\ny: [*x, *x]\n")
    assert doc.data["y"] == [[1, 2], [1, 2]]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "file not found"), (b"\xff\xfe\x00bad", "not UTF-8"), (b"x" * (5 * 1024 * 1024), "larger than")],
)
def test_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert message in str(err.value) and "bad.yaml" in str(err.value)


def test_schema_problems_point_at_the_line_and_suggest_the_key():
    doc = load_yaml_text("name: x\nlicence: mit\n", "card.yaml")
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "license": {"type": "string"}},
              "additionalProperties": False}
    [problem] = schema_problems(doc, schema)
    assert problem.line == 2
    assert "unknown key 'licence'" in str(problem) and "did you mean 'license'" in str(problem)
