"""Webhook relay: the oracle's results pushed to HTTP endpoints, signed as Standard Webhooks, retried,
and kept as dead letters when a receiver refuses them (`python -m bots.relay --help`)."""
