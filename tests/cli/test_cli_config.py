"""``inferox serve`` configuration (defaults < file < environment < flags given, ``--print-config``),
the CLI's independence from the server extra, and its ``verify`` being mlpkg's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from inferox.core.errors import ConfigError
from inferox.engine.cli import cli
from inferox.engine.server._settings import resolve


def invoke(*args: Any, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def _rows(output: str) -> dict[str, tuple[str, str]]:
    """``--print-config``'s table as {setting: (value, source)}."""
    rows: dict[str, tuple[str, str]] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) == 3 and "." in cells[0]:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_layers_defaults_file_environment_flags(tmp_path: Path) -> None:
    conf = tmp_path / "serve.toml"
    conf.write_text('[server]\nport = 9001\nrequest_timeout_s = 30\nkeep_alive_s = 20\n\n[engine]\nmax_batch_size = 16\nmemory_budget_bytes = "1GiB"\n\n[models]\nbackends = ["torch"]\n')
    env = {"INFEROX_SERVER_PORT": "9002", "INFEROX_MAX_BATCH_SIZE": "8", "INFEROX_SERVER_TOKEN": "from-env"}
    got = resolve(file=conf, environ=env, flags={"engine.max_batch_size": 4})
    c = got.config
    assert c.port == 9002 and got.sources["server.port"] == (9002, "environment")  # environment over file
    assert c.engine_config.max_batch_size == 4 and got.sources["engine.max_batch_size"][1] == "flag"  # flag over environment
    assert c.request_timeout_s == 30 and got.sources["server.request_timeout_s"][1] == "file"
    assert c.engine_config.memory_budget_bytes == 2**30 and c.defaults.backends == ("torch",)
    assert c.host == "127.0.0.1" and got.sources["server.host"] == ("127.0.0.1", "default")
    assert c.token == "from-env"
    assert dict((k, s) for k, _, s in got.describe())["server.token"] == "environment"
    assert ("server.token", "***", "environment") in got.describe()


def test_bad_settings_name_the_key_and_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError) as ei:
        resolve(file=conf, environ={})
    assert ei.value.code == "INVALID_CONFIG" and ei.value.field == "server.prot" and ei.value.path == str(conf)
    conf.write_text("[engine]\nmax_batch_size = 0\n")
    with pytest.raises(ConfigError) as ei2:
        resolve(file=conf, environ={})
    assert ei2.value.field == "max_batch_size" and ei2.value.path == str(conf)
    with pytest.raises(ConfigError) as ei3:
        resolve(environ={"INFEROX_SERVER_PORT": "eighty"})
    assert ei3.value.field == "INFEROX_SERVER_PORT"
    conf.write_text("[server]\nport = 70000\n")
    with pytest.raises(ConfigError) as ei4:
        resolve(file=conf, environ={})
    assert ei4.value.field == "server.port"


def test_print_config_shows_values_and_sources(tmp_path: Path) -> None:
    conf = tmp_path / "serve.toml"
    conf.write_text("[server]\nport = 9100\n[engine]\nmax_queue_size = 7\n")
    result = invoke(
        "serve", "--config", conf, "--print-config", "--timeout", "12", "--no-exit-on-error", "--no-strict-readiness", "--backend", "torch",
        env={"INFEROX_MAX_QUEUE_DELAY_MS": "3"},
    )
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    assert rows["server.port"] == ("9100", "file")
    assert rows["engine.max_queue_size"] == ("7", "file")
    assert rows["engine.max_queue_delay_ms"] == ("3.0", "environment")
    assert rows["server.request_timeout_s"] == ("12.0", "flag")
    assert rows["server.exit_on_error"] == ("False", "flag") and rows["server.strict_readiness"] == ("False", "flag")
    assert rows["models.backends"] == ("('torch',)", "flag") and rows["models.device"] == ("None", "default")
    assert rows["models.threads"] == ("None", "default")
    assert _rows(invoke("serve", "--print-config", "--threads", "1").output)["models.threads"] == ("1", "flag")
    # A flag's default never overrides the file: --port was not given.
    assert rows["server.keep_alive_s"] == ("75.0", "default")
    bad = invoke("serve", "--config", tmp_path / "missing.toml", "--print-config")
    assert bad.exit_code == 3 and "error [INVALID_CONFIG]" in bad.output


def test_run_text_needs_no_server_extra(tmp_path: Path) -> None:
    """``inferox run --text`` with starlette and uvicorn made unimportable."""
    from tests.support.packages import build_minilm_package

    pkg = build_minilm_package(tmp_path / "pkg")
    code = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
        "from inferox.engine.cli import main\n"
        f"main(['run', {str(pkg)!r}, '--text', 'hello world', '--backend', 'torch'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "sentence_embedding" in proc.stdout


def test_cli_exports_no_library_api() -> None:
    import inferox.engine.cli as cli_pkg

    assert sorted(cli_pkg.__all__) == ["ParityError", "cli", "exit_code_for", "main"]
    src = Path(cli_pkg.__file__).parent
    for f in src.glob("*.py"):
        text = f.read_text(encoding="utf-8")
        assert "mlpkg._" not in text and "inspect.signature" not in text, f.name


def test_serve_exits_non_zero_when_a_model_fails_to_load(tmp_path: Path) -> None:
    """Triton's start-up model: by default a package that cannot load stops ``inferox serve`` with its error."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metadata.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "inferox.engine.cli", "serve", str(bad), "--port", "0", "--log-level", "error"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 5, proc.stderr
    assert "error [PACKAGE_" in proc.stderr and "Traceback" not in proc.stderr


def test_environment_values_of_every_kind() -> None:
    env = {
        "INFEROX_SERVER_PROTECT_ALL": "yes",
        "INFEROX_SERVER_TOKEN": "s3cret",  # protect_all without a token refuses to start (issue 14, item 6)
        "INFEROX_SERVER_EXIT_ON_ERROR": "off",
        "INFEROX_SERVER_TIMEOUT_S": "none",
        "INFEROX_SERVER_MAX_BODY_BYTES": "2MiB",
        "INFEROX_SERVER_KEEP_ALIVE_S": "30",
        "INFEROX_SERVER_HOST": "0.0.0.0",
        "INFEROX_BATCHING": "false",
        "INFEROX_MEMORY_BUDGET_BYTES": "1GB",
    }
    c = resolve(environ=env).config
    assert c.protect_all is True and c.exit_on_error is False and c.request_timeout_s is None
    assert c.max_body_bytes == 2 * 2**20 and c.keep_alive_s == 30.0 and c.host == "0.0.0.0"
    assert c.engine_config.batching is False and c.engine_config.memory_budget_bytes == 10**9
    for var, raw in (("INFEROX_SERVER_ACCESS_LOG", "maybe"), ("INFEROX_SERVER_MAX_BODY_BYTES", "lots"), ("INFEROX_BATCHING", "perhaps")):
        with pytest.raises(ConfigError) as ei:
            resolve(environ={var: raw})
        assert ei.value.field == var and ei.value.value == raw


def test_bad_file_contents(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    for text, field in (
        ("[server]\nmax_body_bytes = \"huge\"\n", "server.max_body_bytes"),
        ("[engine]\nmemory_budget_bytes = \"huge\"\n", "engine.memory_budget_bytes"),
        ("server = 3\n", "server"),
        ("[other]\nx = 1\n", "other"),
        ("[server]\nkeep_alive_s = 0\n", "server.keep_alive_s"),
        ("[server]\nexit_on_error = \"no\"\n", "server.exit_on_error"),
        ("[models]\nbackends = 3\n", "models.backends"),
    ):
        conf.write_text(text)
        with pytest.raises(ConfigError) as ei:
            resolve(file=conf, environ={})
        assert ei.value.field == field and ei.value.path == str(conf), text
    conf.write_text("[server\n")
    with pytest.raises(ConfigError) as ei2:
        resolve(file=conf, environ={})
    assert "invalid TOML" in str(ei2.value) and ei2.value.path == str(conf)
    with pytest.raises(ConfigError) as ei3:
        resolve(environ={}, flags={"server.nope": 1})
    assert ei3.value.field == "server.nope"


def test_serve_needs_a_path_unless_printing(tmp_path: Path) -> None:
    result = invoke("serve")
    assert result.exit_code == 2 and "PATH is required" in result.output
    missing = invoke("serve", tmp_path / "nothing")
    assert missing.exit_code == 4 and "error [PACKAGE_NOT_FOUND]" in missing.output
    (tmp_path / "file.txt").write_text("x")
    not_dir = invoke("serve", tmp_path / "file.txt")
    assert not_dir.exit_code == 4 and "error [PACKAGE_NOT_FOUND]: nothing servable at" in not_dir.output
