"""DAO governance summaries: every proposal on the configured Governors summarised with a risk score by
the oracle, kept in a feed served as JSON and as a page (`python -m bots.dao_summarizer`)."""
