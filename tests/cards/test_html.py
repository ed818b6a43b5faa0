"""HTML pages keep a card's own HTML (details, images, tables) and never anything that runs or loads code."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rail.cards import import_card_file, import_card_text, render_card
from tests.cards.fidelity import CORPUS

# What a page may never contain, whatever the card says.
FORBIDDEN_TAGS = {
    "script",
    "iframe",
    "object",
    "embed",
    "form",
    "meta",
    "base",
    "link",
    "frame",
    "frameset",
    "applet",
    "svg",
    "math",
    "noscript",
    "template",
    "textarea",
    "button",
    "select",
}
SAFE_SCHEMES = ("", "http", "https", "mailto")


class _Elements(HTMLParser):
    """Collects every element of the page body with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.in_body = True
        if self.in_body:
            self.elements.append((tag, {k: v or "" for k, v in attrs}))


def _elements(page: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Elements()
    parser.feed(page)
    return parser.elements


def _assert_inert(page: str) -> None:
    assert page.count("<style>") == 1  # the page's own stylesheet, nothing from the card
    for tag, attrs in _elements(page):
        assert tag not in FORBIDDEN_TAGS, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src", "srcset", "poster", "action", "formaction", "data"):
                assert urlsplit(value.strip()).scheme.lower() in SAFE_SCHEMES, (tag, value)
            if name == "style":
                assert "url(" not in value and "expression" not in value and "position" not in value, value


HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    '<img src="https://example.org/a.png" onerror="alert(1)">',
    '<img src="javascript:alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="jav&#x09;ascript:alert(1)">tab</a>',
    '<a href="javascript&#58;alert(1)">entity</a>',
    '<a href="data:text/html,<script>alert(1)</script>">data</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<object data="https://evil.example/x.swf"></object>',
    '<embed src="https://evil.example/x.swf">',
    '<form action="https://evil.example"><input name="pw"></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<style>body { display: none }</style>",
    '<svg onload="alert(1)"><circle r="1"/></svg>',
    '<details open ontoggle="alert(1)"><summary>s</summary>x</details>',
    '<div style="background: url(javascript:alert(1)); position: fixed">styled</div>',
    "<scr<script>ipt>alert(1)</script>",
    "[link](javascript:alert(1)) and ![image](javascript:alert(1))",
    '<p><a href="https://example.org" target="_blank">ok link</a></p>',
]


@pytest.mark.parametrize("snippet", HOSTILE)
def test_hostile_html_in_an_imported_card_never_survives(snippet: str):
    text = f"---\nlicense: mit\n---\n# Hostile\n\n{snippet}\n\n## Uses\n\n{snippet}\n"
    page = render_card(import_card_text(text, "README.md").card, "html").text
    _assert_inert(page)


def test_hostile_html_in_a_structured_card_never_survives(write):
    from rail.cards import load_card

    body = "\n".join(HOSTILE).replace('"', '\\"')
    card = load_card(write("c.yaml", f'metadata:\n  license: mit\ntitle: T\nsummary: "{body}"\n'))
    _assert_inert(render_card(card, "html").text)


def test_the_cards_own_html_renders_as_html():
    text = (
        "---\nlicense: mit\n---\n# Card\n\n"
        '<p align="center"><img src="https://example.org/logo.png" alt="Logo" width="200"></p>\n\n'
        "<details>\n<summary>Show the code</summary>\n\n```python\nprint(1)\n```\n\n</details>\n\n"
        "<table>\n<tr><th>task</th><th>score</th></tr>\n<tr><td>xnli</td><td>0.5</td></tr>\n</table>\n"
    )
    page = render_card(import_card_text(text).card, "html").text
    tags = [tag for tag, _ in _elements(page)]
    assert {"details", "summary", "img", "table", "th", "td", "pre"} <= set(tags)
    assert '<img src="https://example.org/logo.png" alt="Logo" width="200">' in page
    assert "&lt;details" not in page and "&lt;img" not in page
    details = page.index("<details>")
    assert details < page.index("<pre><code") < page.index("</details>")  # the code stays inside its block


@pytest.mark.parametrize("readme", sorted(CORPUS.glob("*.md")), ids=lambda p: p.stem)
def test_corpus_pages_keep_their_html_and_stay_inert(readme: Path):
    original = readme.read_text(encoding="utf-8")
    page = render_card(import_card_file(readme).card, "html").text
    _assert_inert(page)
    for tag in ("details", "summary", "img", "table"):
        if f"<{tag}" in original.lower():
            assert f"&lt;{tag}" not in page.lower(), tag
    assert page.count('id="licence-and-use-restrictions"') <= 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_a_card_with_html_renders_as_elements_in_headless_chromium(tmp_path: Path):
    readme = CORPUS / "sambanovasystems__BLOOMChat-176B-v1.md"
    page = tmp_path / "card.html"
    page.write_text(render_card(import_card_file(readme).card, "html").text, encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        flags = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
        ]
        dom = subprocess.run(
            [*flags, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120
        ).stdout
        shot = tmp_path / "card.png"
        subprocess.run(
            [*flags, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
            check=True,
            capture_output=True,
            timeout=120,
        )
    assert dom.count("<details>") == readme.read_text(encoding="utf-8").count("<details>")
    assert "&lt;details" not in dom and "&lt;summary" not in dom
    assert dom.index(">Model Details<") < dom.index(">Uses<") < dom.index(">Cite BLOOMChat<")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a blank page is a few kilobytes
