"""The server's secret key: from the environment, or made once in the data directory."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from emporium.config import Settings
from emporium.kit.secrets import secret_key


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **kw)  # type: ignore[arg-type]


def test_a_key_is_made_once_in_the_data_directory(tmp_path: Path) -> None:
    first = secret_key(_settings(tmp_path))
    path = tmp_path / "data" / "secret_key"
    assert len(first) == 64
    int(first, 16)  # hex
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key(_settings(tmp_path)) == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]


def test_the_environment_key_wins_and_nothing_is_written(tmp_path: Path) -> None:
    given = "s" * 40
    assert secret_key(_settings(tmp_path, secret_key=given)) == given.encode()
    assert not (tmp_path / "data").exists()


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must be at least 32 characters") as caught:
        _settings(tmp_path, secret_key="short-secret")
    assert "short-secret" not in str(caught.value)


def test_production_requires_a_key_and_secure_cookies(tmp_path: Path) -> None:
    tokens = {"admin_token": "a" * 40, "seller_token": "b" * 40}
    with pytest.raises(ValidationError, match="EMPORIUM_SECRET_KEY must be set in production"):
        _settings(tmp_path, env="production", **tokens)
    production = _settings(tmp_path, env="production", secret_key="c" * 40, **tokens)
    assert production.secret_key is not None
    # Cookies are Secure in production unless the operator says otherwise.
    assert production.cookie_secure is True
    assert (
        _settings(
            tmp_path, env="production", secret_key="c" * 40, cookie_secure=False, **tokens
        ).cookie_secure
        is False
    )
    assert _settings(tmp_path).cookie_secure is False


def test_an_unusable_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret_key"
    path.parent.mkdir(parents=True)
    path.write_text("\n")
    with pytest.raises(RuntimeError, match="holds no usable secret key"):
        secret_key(_settings(tmp_path))
    assert path.read_text() == "\n"


def _race(data_dir: str, out: multiprocessing.Queue[bytes]) -> None:
    out.put(secret_key(Settings(_env_file=None, data_dir=Path(data_dir))))  # type: ignore[call-arg]


def test_processes_starting_together_share_one_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[bytes] = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "data"), out)) for _ in range(4)]
    for p in procs:
        p.start()
    keys = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len(set(keys)) == 1
    assert keys[0] == (tmp_path / "data" / "secret_key").read_text().strip().encode()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["secret_key"]
