"""Safe rendering of model output: Markdown (code blocks, lists, tables) to HTML, then sanitised
with nh3 so raw HTML in a response can never run in an annotator's browser."""

import threading
from functools import lru_cache

import markdown as md  # type: ignore[import-untyped]
import nh3

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "pre",
    "code",
    "blockquote",
    "em",
    "strong",
    "del",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "sup",
    "sub",
}


_local = threading.local()


def _converter() -> md.Markdown:
    # one converter per thread, reset between texts: building one (and its extensions) for every
    # text costs more than converting a short one; a converter is not safe to share between threads
    if not hasattr(_local, "converter"):
        _local.converter = md.Markdown(extensions=["fenced_code", "tables", "sane_lists", "nl2br"])
    return _local.converter


@lru_cache(maxsize=4096)  # texts do not change: each is rendered once per process
def render_markdown(text: str) -> str:
    converter = _converter()
    html = converter.reset().convert(text or "")
    return nh3.clean(
        html, tags=ALLOWED_TAGS, attributes={"th": {"align"}, "td": {"align"}, "code": {"class"}}, link_rel=None
    )
