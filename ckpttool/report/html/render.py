"""Fill a page template with a JSON document and the inlined scripts and styles."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from ckpttool.errors import UsageError

__all__ = ["KINDS", "MARKER", "render_html", "require_extra", "embed_json", "document_text"]

KINDS = ("inspect", "diff", "resume")
MARKER = "<!-- ckpttool html report -->"
_EXTRA_HINT = "pip install 'ckpttool[report]'"
# Characters that could end or confuse a <script> block, written as JSON escapes (same values).
_SCRIPT_SAFE = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                ord("\u2028"): "\\u2028", ord("\u2029"): "\\u2029"}


def require_extra() -> None:
    """Fail early, before any work, when jinja2 (the ``report`` extra) is missing.

    Raises:
        UsageError: jinja2 cannot be imported.
    """
    try:
        import jinja2  # noqa: F401
    except ImportError:
        raise UsageError("--html needs the 'report' extra (jinja2), which is not installed",
                         hint=_EXTRA_HINT) from None


def document_text(document: dict[str, Any]) -> str:
    """The document exactly as ``--json`` prints it (compact, UTF-8 kept, odd values as ``str``)."""
    return json.dumps(document, ensure_ascii=False, default=str)


def embed_json(text: str) -> str:
    """JSON text safe inside ``<script type="application/json">``: it parses to the same values."""
    return text.translate(_SCRIPT_SAFE)


def _asset(name: str) -> str:
    return resources.files("ckpttool.report.html").joinpath("assets", name).read_text(encoding="utf-8")


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("ckpttool.report.html", "templates"),
                              autoescape=jinja2.select_autoescape(default=True),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _script(name: str) -> str:
    """An inline script body; ``</script`` inside would end the element early, so it is refused."""
    text = _asset(name)
    if "</script" in text.lower() or "<!--" in text:
        raise AssertionError(f"asset {name} cannot be inlined in a <script> element")
    return text


def render_html(kind: str, document: dict[str, Any], *, title: str) -> str:
    """The whole page for ``kind`` (one of ``KINDS``) drawn from ``document``.

    Raises:
        UsageError: the ``report`` extra is not installed.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    require_extra()
    from markupsafe import Markup

    template = _environment().get_template(f"{kind}.html.j2")
    return template.render(
        marker=Markup(MARKER), title=title, kind=kind,
        data=Markup(embed_json(document_text(document))),
        style=Markup(_asset("report.css")),
        scripts=[Markup(_script(n)) for n in ("echarts.min.js", "common.js", f"{kind}.js")],
        echarts_notice=_asset("echarts.NOTICE").strip(),
    )
