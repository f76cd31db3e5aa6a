"""Talking to the chain: signing responses (and, with the daemon, watching and sending)."""
