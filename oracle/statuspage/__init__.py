"""The operator's status page: one server-rendered HTML document with no script and no outside asset,
reloading itself, showing each chain's intake, requests by state, the day's spend, provider health,
the newest requests with their outcome, and hourly charts of fulfilment latency and spend.

    html = await status_page_html(store, config, breakers={"local": "closed"})
    app.router.add_get("/", status_page_handler(store, config, lambda: router.breaker_states()))

`data.gather` reads (the views and the store), `page.render` formats, `charts.bar_chart` draws."""

from oracle.statuspage.data import StatusPageData, gather
from oracle.statuspage.page import render
from oracle.statuspage.serve import status_page_handler, status_page_html

__all__ = ["StatusPageData", "gather", "render", "status_page_handler", "status_page_html"]
