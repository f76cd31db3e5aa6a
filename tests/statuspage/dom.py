"""Reading the status page as a test reads it: every element's `data-metric` with its text (or, for a
chart's bar, its `data-value`), and the ids of its rows."""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser

_VOID = {"meta", "br", "rect", "line", "img", "input", "link"}


class _Metrics(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: dict[str, str] = {}
        self.ids: list[str] = []
        self._open: list[tuple[str, str | None]] = []  # (tag, metric) of the elements open now
        self._text: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(str(found["id"]))
        metric = found.get("data-metric")
        if metric is not None and "data-value" in found:
            self.values[metric] = str(found["data-value"])
            metric = None
        if tag in _VOID:
            return
        if metric is not None:
            assert metric not in self.values and metric not in self._text, f"data-metric {metric!r} twice"
            self._text[metric] = []
        self._open.append((tag, metric))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, metric = self._open.pop()
            if metric is not None:
                self.values[metric] = "".join(self._text.pop(metric)).strip()
            if open_tag == tag:
                return

    def handle_data(self, data: str) -> None:
        for _, metric in self._open:
            if metric is not None:
                self._text[metric].append(data)


def page_metrics(html: str) -> tuple[dict[str, str], list[str]]:
    """(data-metric -> text shown, row ids) of a page."""
    parser = _Metrics()
    parser.feed(html)
    parser.close()
    return parser.values, parser.ids


def whole(text: str) -> int:
    """A count as the page shows it (1,234)."""
    return int(text.replace(",", ""))


def wei(text: str) -> int:
    """An amount of the native coin as shown back to wei, exactly."""
    return int(Decimal(text).scaleb(18))


def micro_usd(text: str) -> int:
    assert text.startswith("$"), text
    return int(Decimal(text[1:]).scaleb(6))
