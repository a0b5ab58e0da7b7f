"""EngineConfig: defaults, builders, validation, environment and TOML."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from inferox.core.constants import ENV_ENGINE_VARS
from inferox.core.errors import ConfigError
from inferox.engine import Engine, EngineConfig
from inferox.engine._config import parse_size


def test_default_values() -> None:
    cfg = EngineConfig()
    assert cfg.max_batch_size == 32
    assert cfg.max_queue_delay_ms == 2.0
    assert cfg.max_queue_size == 1024
    assert cfg.default_timeout_s is None
    assert cfg.profiling is False
    assert cfg.memory_budget_bytes is None
    assert cfg.backend_preference == ()
    assert cfg.batching is True
    assert cfg.num_workers is None  # one per CPU a thread-safe model leaves free (workers_for)


def test_keyword_construction_and_engine_uses_it() -> None:
    cfg = EngineConfig(max_batch_size=8, max_queue_delay_ms=0, default_timeout_s=3, backend_preference=("JAX", "torch"))
    assert cfg.max_batch_size == 8
    assert cfg.max_queue_delay_ms == 0.0 and isinstance(cfg.max_queue_delay_ms, float)
    assert cfg.default_timeout_s == 3.0
    assert cfg.backend_preference == ("jax", "torch")
    with Engine(cfg) as eng:
        assert eng.config is cfg
    with Engine() as eng:
        assert eng.config == EngineConfig()


def test_builders_return_new_validated_configs() -> None:
    base = EngineConfig()
    cfg = (
        base.with_max_batch_size(64)
        .with_profiling()
        .with_memory_pool_size(1 << 30)
        .with_max_queue_delay_ms(1.5)
        .with_max_queue_size(10)
        .with_default_timeout(2.0)
        .with_backend_preference("torch", "jax")
        .with_batching(False)
        .with_num_workers(2)
        .with_session_ttl(60)
        .with_session_limits(max_state_bytes=100, max_keys=3)
    )
    assert base == EngineConfig()  # frozen: builders never mutate
    assert (cfg.max_batch_size, cfg.profiling, cfg.memory_budget_bytes) == (64, True, 1 << 30)
    assert (cfg.max_queue_delay_ms, cfg.max_queue_size, cfg.default_timeout_s) == (1.5, 10, 2.0)
    assert cfg.backend_preference == ("torch", "jax")
    assert (cfg.batching, cfg.num_workers, cfg.session_ttl_s, cfg.session_max_state_bytes, cfg.session_max_keys) == (False, 2, 60.0, 100, 3)
    assert cfg.with_memory_budget(None).memory_budget_bytes is None
    assert cfg.to_dict()["max_batch_size"] == 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_batch_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_batch_size", 0),
        ("max_batch_size", -4),
        ("max_batch_size", 2.5),
        ("max_batch_size", True),
        ("max_batch_size", "8"),
        ("max_queue_delay_ms", -1),
        ("max_queue_delay_ms", float("nan")),
        ("max_queue_size", 0),
        ("default_timeout_s", 0),
        ("default_timeout_s", -2.0),
        ("profiling", "yes"),
        ("memory_budget_bytes", 0),
        ("batching", 1),
        ("num_workers", 0),
        ("session_ttl_s", 0),
        ("session_max_state_bytes", -1),
        ("session_max_keys", 0),
    ],
)
def test_invalid_values_name_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as ei:
        EngineConfig(**{field: value})
    assert ei.value.code == "INVALID_CONFIG"
    assert ei.value.field == field
    assert ei.value.value is value or ei.value.value == value or value != value


def test_builder_validation_and_unknown_setting() -> None:
    with pytest.raises(ConfigError) as ei:
        EngineConfig().with_max_batch_size(0)
    assert ei.value.field == "max_batch_size" and ei.value.value == 0
    with pytest.raises(ConfigError) as ei:
        EngineConfig().replace(max_batchsize=3)
    assert ei.value.field == "max_batchsize"


def test_unknown_backend_lists_installed_ones() -> None:
    with pytest.raises(ConfigError) as ei:
        EngineConfig(backend_preference=("torch", "tensorflow"))
    assert ei.value.field == "backend_preference"
    assert ei.value.value == "tensorflow"
    assert "torch" in str(ei.value) and "jax" in str(ei.value)
    for bad in (("torch", "torch"), (3,), 5):
        with pytest.raises(ConfigError) as ei2:
            EngineConfig(backend_preference=bad)  # type: ignore[arg-type]
        assert ei2.value.field == "backend_preference"
    assert EngineConfig(backend_preference="jax, torch").backend_preference == ("jax", "torch")  # type: ignore[arg-type]


def test_from_env_reads_every_variable() -> None:
    env = {
        ENV_ENGINE_VARS["max_batch_size"]: "12",
        ENV_ENGINE_VARS["max_queue_delay_ms"]: "0.5",
        ENV_ENGINE_VARS["max_queue_size"]: "99",
        ENV_ENGINE_VARS["default_timeout_s"]: "none",
        ENV_ENGINE_VARS["profiling"]: "true",
        ENV_ENGINE_VARS["memory_budget_bytes"]: "2GiB",
        ENV_ENGINE_VARS["backend_preference"]: "jax,torch",
        ENV_ENGINE_VARS["batching"]: "off",
        ENV_ENGINE_VARS["num_workers"]: "3",
        ENV_ENGINE_VARS["session_ttl_s"]: "30",
        ENV_ENGINE_VARS["session_max_state_bytes"]: "1MB",
        ENV_ENGINE_VARS["session_max_keys"]: "7",
    }
    cfg = EngineConfig.from_env(env)
    assert cfg == EngineConfig(
        max_batch_size=12, max_queue_delay_ms=0.5, max_queue_size=99, default_timeout_s=None, profiling=True, memory_budget_bytes=2 << 30,
        backend_preference=("jax", "torch"), batching=False, num_workers=3, session_ttl_s=30, session_max_state_bytes=10**6, session_max_keys=7,
    )
    assert EngineConfig.from_env({}, max_batch_size=5).max_batch_size == 5


def test_from_env_uses_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFEROX_MAX_BATCH_SIZE", "7")
    assert EngineConfig.from_env().max_batch_size == 7


@pytest.mark.parametrize(
    ("var", "raw"),
    [("INFEROX_MAX_BATCH_SIZE", "many"), ("INFEROX_PROFILING", "maybe"), ("INFEROX_MEMORY_BUDGET_BYTES", "12XB"), ("INFEROX_MAX_QUEUE_DELAY_MS", "x")],
)
def test_from_env_bad_value_names_variable(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as ei:
        EngineConfig.from_env({var: raw})
    assert ei.value.field == var and ei.value.value == raw


def test_from_env_valid_parse_but_invalid_value_names_field() -> None:
    with pytest.raises(ConfigError) as ei:
        EngineConfig.from_env({"INFEROX_MAX_BATCH_SIZE": "0"})
    assert ei.value.field == "max_batch_size"


def test_parse_size_units() -> None:
    assert parse_size("1000") == 1000
    assert parse_size("1.5kb") == 1500
    assert parse_size("512 MiB") == 512 * 2**20
    with pytest.raises(ValueError):
        parse_size("GB")


def test_from_toml_engine_table_and_top_level(tmp_path: Path) -> None:
    p = tmp_path / "inferox.toml"
    p.write_text('[engine]\nmax_batch_size = 4\nbackend_preference = ["jax"]\ndefault_timeout_s = 1.5\n', encoding="utf-8")
    cfg = EngineConfig.from_toml(p)
    assert (cfg.max_batch_size, cfg.backend_preference, cfg.default_timeout_s) == (4, ("jax",), 1.5)
    q = tmp_path / "flat.toml"
    q.write_text("batching = false\n", encoding="utf-8")
    assert EngineConfig.from_toml(q).batching is False


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[engine]\nmax_batch_size = 0\n", "max_batch_size"),
        ("[engine]\nmax_batch = 3\n", "max_batch"),
        ("engine = 3\n", "engine"),
        ("[engine]\nbackend_preference = ['nope']\n", "backend_preference"),
    ],
)
def test_from_toml_errors_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        EngineConfig.from_toml(p)
    assert ei.value.path == str(p)
    assert ei.value.field == field
    assert str(p) in str(ei.value)


def test_from_toml_unreadable_and_malformed(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as ei:
        EngineConfig.from_toml(missing)
    assert ei.value.path == str(missing) and ei.value.code == "INVALID_CONFIG"
    bad = tmp_path / "broken.toml"
    bad.write_text("max_batch_size = [", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        EngineConfig.from_toml(bad)
    assert ei.value.path == str(bad)


def test_engine_rejects_non_config() -> None:
    from inferox.core.errors import TypeMismatchError

    with pytest.raises(TypeMismatchError) as ei:
        Engine({"max_batch_size": 3})  # type: ignore[arg-type]
    assert ei.value.code == "TYPE_MISMATCH" and ei.value.expected == "EngineConfig"
