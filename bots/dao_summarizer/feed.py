"""What the summarizer publishes: the JSON feed of summarised proposals, the HTML page listing every
proposal with its summary and risk, and the daily digest.

Proposal text and model answers are untrusted: on the page every one of them goes through
`html.escape`, so a description holding markup shows as text. The feed file is replaced whole after each
change (written beside it, then renamed), so a reader never sees half of one and a crash never repeats
an entry.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bots.dao_summarizer.book import Book, Proposal

PAGE_REFRESH = 15  # seconds


def feed(book: Book) -> dict[str, Any]:
    entries = [p.feed_entry() for p in reversed(book.all()) if p.state == "summarized"]
    return {"version": 1, "proposals": entries}


def write_feed(book: Book, path: Path) -> None:
    body = json.dumps(feed(book), ensure_ascii=False, indent=1).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        os.chmod(tmp, 0o644)  # a feed is for others to read (mkstemp makes it the owner's only)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def digest(book: Book, now: datetime.datetime) -> dict[str, Any]:
    """The last 24 hours: how many proposals were summarised, their mean risk and the riskiest."""
    day = book.summarized_since((now - datetime.timedelta(days=1)).timestamp())
    risks = [p.risk for p in day if p.risk is not None]
    riskiest = max(day, key=lambda p: p.risk or 0, default=None)
    return {"day": now.date().isoformat(), "made_at": now.isoformat(timespec="seconds"), "summarized": len(day),
            "mean_risk": round(sum(risks) / len(risks), 1) if risks else None,
            "riskiest": None if riskiest is None else {"proposal_id": str(riskiest.proposal_id),
                                                        "governor": riskiest.governor, "title": riskiest.title,
                                                        "risk": riskiest.risk},
            "waiting": len(book.in_state("new", "asked", "failed")), "given_up": len(book.in_state("given_up"))}


def _risk_class(risk: int | None) -> str:
    if risk is None:
        return "none"
    return "high" if risk >= 70 else ("mid" if risk >= 40 else "low")


def _row(p: Proposal, names: dict[str, str]) -> str:
    e = html.escape
    risk = "" if p.risk is None else str(p.risk)
    answer = (f"<p>{e(p.summary or '')}</p><p class=why>{e(p.rationale or '')}</p>" if p.state == "summarized"
              else f"<p class=state>{e(p.state.replace('_', ' '))}{': ' + e(p.reason) if p.reason else ''}</p>")
    receipt = f"<code>0x{p.receipt_hash.hex()[:16]}…</code>" if p.receipt_hash else ""
    return (f"<tr id=\"p{p.proposal_id}\"><td>{e(names.get(p.governor.lower(), p.governor))}</td>"
            f"<td><b>{e(p.title)}</b><br><code>{p.proposal_id}</code></td><td>{answer}</td>"
            f"<td class=\"risk {_risk_class(p.risk)}\">{risk}</td><td>{receipt}</td></tr>")


def page(book: Book, names: dict[str, str]) -> str:
    rows = "\n".join(_row(p, names) for p in book.all()) or "<tr><td colspan=5>no proposals yet</td></tr>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{PAGE_REFRESH}">
<title>Governance proposals: AI summaries</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .5rem; vertical-align: top; text-align: left; }}
.risk {{ font-weight: bold; text-align: center; }} .low {{ color: #1a7f37; }} .mid {{ color: #9a6700; }}
.high {{ color: #cf222e; }} .why, .state {{ color: #555; }} code {{ font-size: 12px; }}
</style></head><body>
<h1>Governance proposals</h1>
<p>Each proposal summarised by the AI oracle, with a risk score from 0 (harmless) to 100; the receipt hash
is on-chain. Feed: <a href="feed.json">feed.json</a>, last digest: <a href="digest.json">digest.json</a>.</p>
<table><thead><tr><th>Governor</th><th>Proposal</th><th>Summary</th><th>Risk</th><th>Receipt</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""

