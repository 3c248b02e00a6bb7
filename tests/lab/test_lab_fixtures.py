"""The lab fixtures skip where the lab cannot run, and fail instead when IMPCTL_REQUIRE_LAB=1."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).parent.parent / "conftest.py"

INNER_TESTS = '''
import pytest

@pytest.mark.lab
def test_uses_the_lab(lab):
    assert lab.is_up()

@pytest.mark.lab
def test_only_marked():
    pass

def test_plain():
    pass
'''


def _session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
             require: str | None) -> pytest.RunResult:
    # As if not root: the inner session's conftest sees a non-zero euid.
    pytester.makeconftest(CONFTEST.read_text().replace('pytest_plugins = ["pytester"]', "")
                          + "\nos.geteuid = lambda: 1000\n")
    pytester.makepyfile(test_inner=INNER_TESTS)
    if require is None:
        monkeypatch.delenv("IMPCTL_REQUIRE_LAB", raising=False)
    else:
        monkeypatch.setenv("IMPCTL_REQUIRE_LAB", require)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rsE")


def test_lab_tests_are_skipped_with_the_reason(pytester: pytest.Pytester,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    result = _session(pytester, monkeypatch, None)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*the lab needs root*"])


def test_lab_tests_fail_when_the_lab_is_required(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    result = _session(pytester, monkeypatch, "1")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*IMPCTL_REQUIRE_LAB is set but the lab cannot run: "
                                 "the lab needs root*"])
