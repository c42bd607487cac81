"""Stack Exchange bodies are HTML. The paper strips links, images and other HTML but keeps code
blocks and lists; we turn the HTML into Markdown that keeps exactly those."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_BLOCKS = {"p", "div", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "hr"}
# a bare URL (with balanced parentheses, as Wikipedia's have), or one in <angle brackets>
_URL = re.compile(r"<?(?:https?://|www\.)(?:\([^\s()]*\)|[^\s()<>])+(?:\([^\s()]*\))?>?")
_MARKDOWN_LINK = re.compile(r"!\[[^\]]*\]\((?:\([^)]*\)|[^)])*\)|\[([^\]]+)\]\((?:\([^)]*\)|[^)])*\)")


class _ToMarkdown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.lists: list[list[int]] = []  # a stack of [ordered?, counter]
        self.pre = 0
        self.code = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "pre":
            self.pre += 1
            self.out.append("\n\n```\n")
        elif tag == "code" and not self.pre:
            self.code += 1
            self.out.append("`")
        elif tag in ("ul", "ol"):
            self.lists.append([1 if tag == "ol" else 0, 0])
            self.out.append("\n")
        elif tag == "li":
            indent = "  " * (len(self.lists) - 1)
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                self.out.append(f"\n{indent}{self.lists[-1][1]}. ")
            else:
                self.out.append(f"\n{indent}- ")
        elif tag == "br":
            self.out.append("\n")
        elif tag in _BLOCKS:
            self.out.append("\n\n")
        # a, img and every other tag: dropped (a link keeps its text, an image disappears)

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre" and self.pre:
            self.pre -= 1
            self.out.append("\n```\n\n")
        elif tag == "code" and self.code:
            self.code -= 1
            self.out.append("`")
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self.out.append("\n\n")
        elif tag in _BLOCKS:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.pre:
            self.out.append(data)
        else:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_markdown(body: str) -> str:
    parser = _ToMarkdown()
    parser.feed(body)
    parser.close()
    return tidy(_without_urls("".join(parser.out)))


def _without_urls(text: str) -> str:
    """Bare URLs removed outside code (a link's text stays, its address goes)."""
    parts = re.split(r"(```.*?```|`[^`\n]*`)", text, flags=re.S)
    return "".join(part if i % 2 else _URL.sub(_keep_punctuation, part) for i, part in enumerate(parts))


def _keep_punctuation(match: re.Match) -> str:
    """A sentence's full stop or comma after a URL is not part of it."""
    return re.search(r"[.,;:!?]*$", match.group(0).rstrip(">")).group(0)  # type: ignore[union-attr]


def strip_links(text: str) -> str:
    """Plain-text sources (wikiHow, Reddit): drop Markdown images, keep link texts, remove URLs."""
    text = _MARKDOWN_LINK.sub(lambda m: m.group(1) or "", html.unescape(text))
    return tidy(_without_urls(text))


_LIST_ITEM = re.compile(r"^(\s*)(-|\d+\.) +")


def tidy(text: str) -> str:
    """Trim the whitespace inline tags leave behind, outside code blocks only (code keeps its
    indentation); nested list items keep theirs."""
    parts = re.split(r"(```.*?```)", text.replace("\r\n", "\n"), flags=re.S)
    for i in range(0, len(parts), 2):
        lines = []
        for line in parts[i].split("\n"):
            item = _LIST_ITEM.match(line)
            lines.append(_LIST_ITEM.sub(r"\1\2 ", line.rstrip()) if item else line.strip())
        parts[i] = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", "".join(parts)).strip()
