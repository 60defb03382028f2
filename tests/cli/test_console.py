"""`segments console`'s start: it refuses to serve personal data without a token file, and says
what is wrong with one it cannot use, before binding anything."""
from __future__ import annotations

import pytest

from stream.cli.main import main


def test_no_token_file_no_console(tmp_path, capsys):
    assert main(["console", "--state-dir", str(tmp_path), "--group-id", "g", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segments console: ") and "--http-token-file" in err


def test_an_unusable_token_file_is_named_and_its_content_never_shown(tmp_path, capsys):
    short = tmp_path / "token"
    short.write_text("short-secret\n")
    assert main(["console", "--state-dir", str(tmp_path), "--group-id", "g", "--http-token-file", str(short)]) == 2
    err = capsys.readouterr().err
    assert str(short) in err and "at least 16" in err and "short-secret" not in err


def test_a_port_out_of_range_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["console", "--port", "70000"])
    assert exited.value.code == 2
    assert "a port is 0 to 65535" in capsys.readouterr().err


def test_the_console_shows_a_stored_file_definition_as_the_file_writes_it(tmp_path):
    """The Running record keeps definitions with sorted keys; one the segments file holds unchanged
    is shown (and explained) in the file's order, as `segments explain` and the worker show it."""
    from types import SimpleNamespace

    from stream.cli.console import StoresView
    from stream.definitions.resolution import Running, encode_running, file_definitions
    from stream.rules.catalog import load_catalog
    from stream.storage.keys import DEFINITIONS_KEY
    from stream.storage.rocksdb_store import PartitionStore

    segments = tmp_path / "segments.yaml"
    segments.write_text("segments:\n  spend-band:\n    when:\n      paid_total: {lte: 1000, gte: 100}\n")
    file_catalog = load_catalog(segments)
    store = PartitionStore(tmp_path / "state" / "grp" / "p0")
    store.set_meta(DEFINITIONS_KEY, encode_running(Running(file_definitions(file_catalog))))
    store.commit(1)
    view = StoresView(SimpleNamespace(state_dir=tmp_path / "state", group_id="grp"),  # type: ignore[arg-type]
                      file_catalog, None)
    shown = view.describe()["segments"]["spend-band"]["definition"]
    assert list(shown["when"]["paid_total"]) == ["lte", "gte"]
    assert list(view.catalog().by_name["spend-band"].definition["when"]["paid_total"]) == ["lte", "gte"]
    store.close()
