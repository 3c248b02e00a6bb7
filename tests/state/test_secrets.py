"""The gateway key: made once, atomically, by whichever process comes first; a damaged one is reported."""

from __future__ import annotations

import multiprocessing
import stat
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from impctl.backends.secrets import decrypt_secret, encrypt_secret, key_path_for
from impctl.model.errors import StateError
from impctl.model.nic import Secret

WORKERS = 8
ROUNDS = 50


def _encrypt_rounds(base: str, worker: int, barrier: Barrier, out: multiprocessing.Queue[tuple[int, int, str]]) -> None:
    for rnd in range(ROUNDS):
        key_path = Path(base) / f"r{rnd}" / "state" / "secret.key"  # fresh: not even the directory exists
        barrier.wait()  # all eight encrypt at once
        try:
            secret = encrypt_secret(Secret(plain=f"secret {rnd}/{worker}"), key_path)
            assert secret is not None and secret.encrypted is not None
            out.put((rnd, worker, "token:" + secret.encrypted))
        except Exception as exc:  # the test counts these: any at all is the bug
            out.put((rnd, worker, f"error:{type(exc).__name__}: {exc}"))


def test_eight_processes_creating_the_key_at_once_agree_on_one(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WORKERS)
    out: multiprocessing.Queue[tuple[int, int, str]] = ctx.Queue()
    procs = [ctx.Process(target=_encrypt_rounds, args=(str(tmp_path), w, barrier, out)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in range(WORKERS * ROUNDS)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    errors = [r for r in results if not r[2].startswith("token:")]
    assert errors == []
    for rnd, worker, token in results:
        key_path = tmp_path / f"r{rnd}" / "state" / "secret.key"
        assert decrypt_secret(Secret(encrypted=token.removeprefix("token:")), key_path) == f"secret {rnd}/{worker}"
    for rnd in range(ROUNDS):
        directory = tmp_path / f"r{rnd}" / "state"
        assert [p.name for p in directory.iterdir()] == ["secret.key"]  # no temporary file left
        assert stat.S_IMODE((directory / "secret.key").stat().st_mode) == 0o600


def test_the_key_is_made_once_and_kept(tmp_path: Path) -> None:
    key_path = key_path_for(tmp_path / "state.json")
    first = encrypt_secret(Secret(plain="a"), key_path)
    content = key_path.read_bytes()
    Fernet(content.strip())  # a real Fernet key
    second = encrypt_secret(Secret(plain="b"), key_path)
    assert key_path.read_bytes() == content
    assert decrypt_secret(first, key_path) == "a" and decrypt_secret(second, key_path) == "b"


def test_decrypting_without_a_key_does_not_make_one(tmp_path: Path) -> None:
    key_path = tmp_path / "secret.key"
    with pytest.raises(Exception, match="no key"):
        decrypt_secret(Secret(encrypted="gAAAA"), key_path)
    assert not key_path.exists()


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "empty"),
        (b"\n  \n", "empty"),
        (b"c2hvcnQ=\n", "5 bytes instead of 32"),
        (b"not base64 at all!\n", "not url-safe base64"),
        (b"\xff\xfe\x00garbage", "not url-safe base64"),
        (Fernet.generate_key() + b"A", "not url-safe base64"),
        (b"A" * 5000, "over 1024 bytes, a key is 44"),
    ],
)
def test_a_corrupt_key_is_one_clear_error_and_never_replaced(tmp_path: Path, content: bytes, what: str) -> None:
    key_path = tmp_path / "secret.key"
    key_path.write_bytes(content)
    for call in (lambda: encrypt_secret(Secret(plain="x"), key_path),
                 lambda: decrypt_secret(Secret(encrypted="gAAAA"), key_path)):
        with pytest.raises(StateError) as err:
            call()
        message = err.value.message
        assert f"the gateway key {key_path} is corrupt ({what})" in message
        assert "remove it and re-enter the stored secrets" in message
        assert "\n" not in message and int(err.value.exit_code) == 3
    assert key_path.read_bytes() == content


def test_a_directory_in_place_of_the_key(tmp_path: Path) -> None:
    key_path = tmp_path / "secret.key"
    key_path.mkdir()
    with pytest.raises(StateError, match="is a directory"):
        encrypt_secret(Secret(plain="x"), key_path)
