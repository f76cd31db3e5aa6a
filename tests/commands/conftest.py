"""The commands against the real daemon: the daemon tests' fixtures."""

from tests.daemon.conftest import env, running

__all__ = ["env", "running"]
