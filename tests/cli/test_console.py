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
