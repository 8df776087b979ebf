"""migrate.toml: loading, defaults, and errors that name file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.config import find_config, load_config
from migrate.errors import ConfigError, mask_secrets

BASE = """
[source]
url = "sqlite:///legacy.db"

[target]
url = "local:///.migrate/target.db"

[state]
url = "sqlite:///.migrate/state.db"

[services.pds]
mapping = "mappings/pds.yaml"

[services.ods]
mapping = "mappings/ods.yaml"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "migrate.toml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, BASE))
    assert config.base_dir == tmp_path
    assert config.services["pds"].mapping == (tmp_path / "mappings" / "pds.yaml").resolve()
    assert config.run.chunk_size == 5000 and config.run.max_rejects == 0
    assert config.work_dir == tmp_path / ".migrate" / "work"
    assert [s.name for s in config.select([])] == ["pds", "ods"]


def test_cutover_order_decides_the_default_order(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, BASE + '\n[cutover]\norder = ["ods", "pds"]\n'))
    assert [s.name for s in config.select([])] == ["ods", "pds"]
    assert [s.name for s in config.select(["pds"])] == ["pds"]


def test_unknown_service_is_a_config_error_listing_the_known_ones(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, BASE))
    with pytest.raises(ConfigError, match="no service 'eps'") as info:
        config.service("eps")
    assert "pds, ods" in str(info.value)


@pytest.mark.parametrize(
    ("extra", "message", "line_of"),
    [
        ("\n[run]\nchunk_size = 0\n", "chunk_size must be an integer >= 1", "chunk_size = 0"),
        ("\n[run]\nmax_rejects = -1\n", "max_rejects must be", "max_rejects = -1"),
        ("\n[run]\nworkers = true\n", "workers must be", "workers = true"),
        ("\n[nonsense]\nx = 1\n", "unknown section [nonsense]", "[nonsense]"),
        ('\n[cutover]\norder = ["eps"]\n', "order names 'eps'", 'order = ["eps"]'),
        ('\n[services.Bad]\nmapping = "x.yaml"\n', "service name 'Bad'", "[services.Bad]"),
    ],
)
def test_errors_name_the_line(tmp_path: Path, extra: str, message: str, line_of: str) -> None:
    path = _write(tmp_path, BASE + extra)
    line = path.read_text().splitlines().index(line_of) + 1
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert f"{path}:{line}" in str(info.value)
    assert info.value.exit_code == 2


def test_missing_section(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace('[target]\nurl = "local:///.migrate/target.db"\n', ""))
    with pytest.raises(ConfigError, match=r"missing section \[target\]"):
        load_config(path)


def test_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[source\nurl="))


def test_password_in_url_is_refused_and_never_echoed(tmp_path: Path) -> None:
    path = _write(
        tmp_path, BASE.replace("sqlite:///legacy.db", "oracle+oracledb://spine:Tiger99@db:1521/x")
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "Tiger99" not in str(info.value)
    assert "password_env" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "hint"),
    [
        ("sqlite:///legacy.db", "sqlite:///legacy.db?password=Tiger99", "password_env"),
        (
            "sqlite:///.migrate/state.db",
            "postgresql://u@db/x?sslmode=require&PassWord=Tiger99",
            "password_env",
        ),
        ("local:///.migrate/target.db", "riak://bob:Tiger99@riak1:8098", "RIAK_PASSWORD"),
        ("local:///.migrate/target.db", "riak://riak1:8098?token=Tiger99", "RIAK_USER"),
    ],
)
def test_a_password_anywhere_in_a_url_is_refused_with_the_right_hint(
    tmp_path: Path, old: str, new: str, hint: str
) -> None:
    path = _write(tmp_path, BASE.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "Tiger99" not in str(info.value) and hint in str(info.value)
    assert "holds a password" in str(info.value)


def test_secrets_in_query_strings_are_masked() -> None:
    text = "postgresql://u@h/db?sslmode=require&password=Tiger99&x=1;pwd=abc&token=t0k"
    masked = mask_secrets(text)
    assert "Tiger99" not in masked and "t0k" not in masked and "pwd=***" in masked
    assert "sslmode=require" in masked and "&x=1" in masked


def test_password_comes_from_the_environment_and_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(
        tmp_path,
        BASE.replace(
            'url = "sqlite:///legacy.db"',
            'url = "sqlite:///legacy.db"\npassword_env = "PW_FOR_TEST"',
        ),
    )
    config = load_config(path)
    with pytest.raises(ConfigError, match="PW_FOR_TEST"):
        config.source.password()
    monkeypatch.setenv("PW_FOR_TEST", "correct-horse")
    assert config.source.password() == "correct-horse"
    assert mask_secrets("connecting with correct-horse failed") == "connecting with *** failed"


def test_find_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, BASE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIGRATE_CONFIG", raising=False)
    assert find_config() == path.resolve()
    assert find_config(tmp_path) == path.resolve()
    monkeypatch.setenv("MIGRATE_CONFIG", str(path))
    monkeypatch.chdir("/")
    assert find_config() == path.resolve()
    with pytest.raises(ConfigError, match="does not exist"):
        find_config(tmp_path / "nope.toml")


def test_the_source_schema_names_another_users_tables(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, BASE)).source.schema is None
    text = BASE.replace(
        'url = "sqlite:///legacy.db"', 'url = "sqlite:///legacy.db"\nschema = "SPINE"'
    )
    assert load_config(_write(tmp_path, text)).source.schema == "SPINE"
    bad = BASE.replace('url = "sqlite:///legacy.db"', 'url = "sqlite:///legacy.db"\nschema = 3')
    with pytest.raises(ConfigError, match=r"\[source\] schema must be a non-empty string") as info:
        load_config(_write(tmp_path, bad))
    assert info.value.where is not None and info.value.where.endswith(":4")  # its own line


def test_source_types_are_table_column_pairs(tmp_path: Path) -> None:
    text = BASE.replace(
        'url = "sqlite:///legacy.db"',
        'url = "sqlite:///legacy.db"\n[source.types]\n"SCR_ADVERSE_REACTIONS.ONSET_AT" = "DATE"',
    )
    config = load_config(_write(tmp_path, text))
    assert config.source.types == {"SCR_ADVERSE_REACTIONS.ONSET_AT": "DATE"}
    bad = text.replace('"SCR_ADVERSE_REACTIONS.ONSET_AT"', '"ONSET_AT"')
    with pytest.raises(ConfigError, match=r"must be TABLE\.COLUMN") as info:
        load_config(_write(tmp_path, bad))
    assert info.value.where is not None and info.value.where.endswith(":5")


def test_target_patience_is_seconds_from_zero(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, BASE)).target.patience == 0.0
    waiting = BASE.replace(
        'url = "local:///.migrate/target.db"', 'url = "riak://h:8098"\npatience = 120'
    )
    assert load_config(_write(tmp_path, waiting)).target.patience == 120.0
    for bad in ("-1", '"long"', "true"):
        text = BASE.replace(
            'url = "local:///.migrate/target.db"', f'url = "riak://h:8098"\npatience = {bad}'
        )
        with pytest.raises(ConfigError, match="patience must be a number of seconds >= 0") as e:
            load_config(_write(tmp_path, text))
        assert "migrate.toml:7" in e.value.render()
    timeout = BASE.replace('url = "local:///.migrate/target.db"', 'url = "riak://h"\ntimeout = 0')
    with pytest.raises(ConfigError, match="timeout must be a number of seconds > 0"):
        load_config(_write(tmp_path, timeout))


def test_watermark_names_last_modified_columns_with_capture_watermark(tmp_path: Path) -> None:
    pds = 'mapping = "mappings/pds.yaml"\n'

    def with_pds(lines: str) -> Path:
        return _write(tmp_path, BASE.replace(pds, pds + lines))

    every = load_config(with_pds('capture = "watermark"\nwatermark = "UPDATED_AT"\n'))
    assert every.service("pds").watermark_column("patients") == "UPDATED_AT"
    named = load_config(
        with_pds('capture = "watermark"\nwatermark = { PATIENTS = "CHANGED", "*" = "TS" }\n')
    )
    assert named.service("pds").watermark_column("patients") == "CHANGED"
    assert named.service("pds").watermark_column("ADDRESSES") == "TS"
    assert load_config(_write(tmp_path, BASE)).service("pds").watermark_column("P") is None
    for lines, message, line in (
        ('capture = "watermark"\n', "needs the last-modified column", 13),
        ('capture = "triggers"\nwatermark = "TS"\n', 'only read with capture = "watermark"', 14),
        ('capture = "watermark"\nwatermark = 3\n', "must be a column name or a table", 14),
        ('capture = "watermark"\nwatermark = { P = "" }\n', "must be a column name", 14),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            load_config(with_pds(lines))
        assert f"migrate.toml:{line}" in info.value.render(), lines
