"""The local-llm extra's wiring that needs no model: what a user without the extra is told, the catalog
entry of the llama.cpp deployment, and the advice for a llama.cpp build that faults. The server itself
runs in tests/llm (`make test-llm`)."""

from __future__ import annotations

import signal
import sys

import pytest

from oracle.cli import main
from oracle.config import ModelDeployment
from oracle.devnet.llama_server import (
    LOCAL_MODEL,
    REBUILD,
    LlamaServerError,
    check_installed,
    local_model,
    start_failure,
)
from oracle.router import Catalog


def test_without_llama_cpp_the_error_says_to_install_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed
    with pytest.raises(LlamaServerError, match=r"llama-cpp-python\[server\]\) is not installed: run "
                                               r"`pip install \.\[local-llm\]`"):
        check_installed()


def test_oracle_dev_model_local_without_the_extra_exits_2_before_starting_anything(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    assert main(["dev", "--model", "local"]) == 2
    captured = capsys.readouterr()
    assert "pip install .[local-llm]" in captured.err
    assert "anvil" not in captured.out  # refused before the local stack started


def test_an_unknown_model_choice_is_refused_by_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dev", "--model", "gpt"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --model: invalid choice: 'gpt'" in err and "local" in err


def test_the_catalog_entry_is_a_json_object_deployment_of_the_exact_model() -> None:
    d = ModelDeployment.model_validate(local_model("http://127.0.0.1:8000/v1"))
    assert (d.id, d.model, d.api, d.payer, d.schema_format) == ("local", LOCAL_MODEL, "openai", "none", "json_object")
    assert d.capabilities == ("json_schema", "seed") and d.data_policy == "zero_retention"
    assert (d.context_window, d.max_output) == (4_096, 1_024)
    assert '"schema_format":"json_object"' in Catalog([d]).body  # part of the catalog version receipts name


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGILL])
def test_a_server_killed_by_a_fault_is_told_to_rebuild_portable(sig: signal.Signals) -> None:
    message = start_failure(-sig, "Fatal Python error: Segmentation fault", 180.0)
    assert f"was killed by {sig.name}" in message and "Segmentation fault" in message
    assert REBUILD in message and "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install .[local-llm]" in message


def test_other_start_failures_show_the_servers_output_without_the_rebuild() -> None:
    assert start_failure(1, "ValueError: Model path does not exist", 180.0) == (
        "llama.cpp's server exited with code 1; its last output:\nValueError: Model path does not exist")
    assert start_failure(None, "", 180.0).startswith("llama.cpp's server did not answer within 180 s")
