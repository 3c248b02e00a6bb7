"""The state file: atomic, locked, private; corrupt or newer files are never overwritten."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from impctl.backends.statefile import load_state, update_state
from impctl.backends.store import FileStore
from impctl.model.errors import PermissionDenied, StateError
from impctl.model.state import SCHEMA_VERSION, State
from impctl.usecases.interfaces import get_sequence, set_sequence

LISTS = [["wifi", "cell"], ["cell"], ["ethernet", "wifi", "cell"], ["wifi"], ["cell", "ethernet"]]


def test_missing_file_is_the_empty_state(tmp_path: Path) -> None:
    assert get_sequence(FileStore(tmp_path / "nope" / "state.json")).sequence == []


def test_written_file_is_private_versioned_and_reread(tmp_path: Path) -> None:
    path = tmp_path / "d" / "state.json"
    set_sequence(FileStore(path), ["wl0", "wifi", "eth0", "cell"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["sequence"] == ["wifi", "ethernet", "cell"]
    assert load_state(path).sequence == ["wifi", "ethernet", "cell"]
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "corrupt"),
        ("\xff\xfe", "corrupt"),
        ("[]", "not a JSON object"),
        ('{"sequence": []}', "schema_version"),
        (json.dumps({"schema_version": SCHEMA_VERSION + 1, "sequence": []}), "newer"),
        (json.dumps({"schema_version": 1, "sequence": ["bogus"]}), "sequence"),
        (json.dumps({"schema_version": 1, "sequence": "wifi"}), "sequence"),
    ],
)
def test_bad_files_are_reported_and_left_untouched(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content.encode("latin-1"))
    before = path.read_bytes()
    with pytest.raises(StateError) as err:
        set_sequence(FileStore(path), ["cell"])
    assert words in err.value.message
    assert path.read_bytes() == before


def test_a_failing_change_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    set_sequence(FileStore(path), ["cell"])
    before = path.read_bytes()

    def boom(state: State) -> None:
        state.set_sequence(["wifi"])
        raise RuntimeError("midway")

    with pytest.raises(RuntimeError):
        update_state(path, boom)
    assert path.read_bytes() == before


def _write_as_nobody(path: str, queue: multiprocessing.Queue[str]) -> None:
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)  # root would bypass the permission check under test
    try:
        set_sequence(FileStore(Path(path)), ["cell"])
    except PermissionDenied as err:
        queue.put(f"denied: {err.message}")
    else:
        queue.put("written")


def test_unwritable_directory_is_a_permission_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    proc = ctx.Process(target=_write_as_nobody, args=(str(ro / "state.json"), queue))
    proc.start()
    proc.join(30)
    outcome = queue.get(timeout=5)
    assert outcome.startswith("denied: cannot"), outcome
    assert "permission denied" in outcome
    assert list(ro.iterdir()) == []


def _writer(path: str, index: int) -> None:
    for round_ in range(5):
        set_sequence(FileStore(Path(path)), LISTS[(index + round_) % len(LISTS)])


def _stamp(path: str, index: int) -> None:
    def change(state: State) -> None:
        state.last_results[f"p{index}"] = index

    update_state(Path(path), change)


def test_fifty_concurrent_writers_leave_one_whole_list(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), i)) for i in range(50)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    doc = json.loads(path.read_text())  # never truncated: it parses
    assert doc["sequence"] in LISTS  # one of the lists written, never a mix
    assert doc["sequence_index"] == 0


def test_fifty_concurrent_read_modify_writes_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_stamp, args=(str(path), i)) for i in range(50)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert load_state(path).last_results == {f"p{i}": i for i in range(50)}


def test_a_read_only_file_system_does_not_tell_root_to_run_as_root(tmp_path: Path) -> None:
    import errno

    from impctl.backends.statefile import _os_error

    err = _os_error(tmp_path / "state.json", OSError(errno.EROFS, "Read-only file system"), "write state file")
    assert isinstance(err, PermissionDenied)
    assert err.hint is not None and "root" not in err.hint and "read-only" in err.hint
    if os.geteuid() == 0:
        denied = _os_error(tmp_path / "state.json", OSError(errno.EACCES, "Permission denied"), "write state file")
        assert denied.hint is not None and "run as root" not in denied.hint  # type: ignore[attr-defined]


def _doc(extra: str) -> str:
    return '{"schema_version": 1, "daemon": ' + extra + "}"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (_doc('{"a":' * 1000 + "1" + "}" * 1000), "nested deeper than 64 levels"),
        (_doc("[" * 100_000 + "]" * 100_000), "nested deeper than 64 levels"),
        (_doc('{"n": ' + "9" * 5000 + "}"), "number with more than 40 characters"),
        (_doc('{"n": NaN}'), "NaN, which is not JSON"),
        (_doc('{"ssid": "\\ud800"}'), "lone UTF-16 surrogate ('\\ud800'), which is not text at daemon.ssid"),
        ('{"schema_version": 1, "schema_version": 2}', "twice"),
        (_doc('"' + "x" * (4 * 1024 * 1024) + '"'), "larger than 4194304 bytes"),
    ],
)
def test_hostile_files_are_one_line_state_errors_and_left_untouched(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    before = path.read_bytes()
    with pytest.raises(StateError) as err:
        set_sequence(FileStore(path), ["cell"])
    assert words in err.value.message
    assert "move it aside" in err.value.message and err.value.hint is None  # one line says it all
    assert "\n" not in err.value.message
    assert path.read_bytes() == before


def test_an_endless_file_is_not_read_to_the_end() -> None:
    with pytest.raises(StateError, match="larger than"):
        load_state(Path("/dev/zero"))
