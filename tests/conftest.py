"""Shared fixtures: one local stack (anvil on a free loopback port, contracts deployed) per session.

The whole suite also records every state transition taken, in this process and in the daemons it
starts (ORACLE_TRANSITION_LOG), and fails if an allowed transition of any state machine was taken by
no test (oracle/store/states.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from oracle.devnet import LocalStack
from oracle.store.states import TRANSITION_LOG, untaken

_LOG = Path(tempfile.mkdtemp(prefix="oracle-transitions-")) / "taken.log"
os.environ[TRANSITION_LOG] = str(_LOG)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with LocalStack() as s:
        yield s


def _whole_suite(config: pytest.Config) -> bool:
    """Only a run of every test can say that a transition is taken by none: the configured test paths,
    nothing selected, ignored or skipped over."""
    narrowing = ("keyword", "markexpr", "lf", "deselect", "ignore", "ignore_glob", "stepwise", "collectonly")
    return (config.args_source == pytest.Config.ArgsSource.TESTPATHS
            and not any(config.getoption(name, default=None) for name in narrowing))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus != 0 or not _whole_suite(session.config):
        return
    missing = untaken(_LOG.read_text().splitlines() if _LOG.exists() else [])
    shutil.rmtree(_LOG.parent, ignore_errors=True)
    if missing:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"{len(missing)} allowed state transitions are taken by no test:", red=True)
            for line in missing:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
