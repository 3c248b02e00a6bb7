"""The bounded decoders: hostile documents give DocumentError, never RecursionError or ValueError."""

from __future__ import annotations

import json

import pytest

from impctl.model.bounded import (
    MAX_NUMBER_CHARS,
    DocumentError,
    Limits,
    check_json_depth,
    load_json,
    load_toml,
)
from impctl.model.errors import ValidationError
from impctl.model.nic import NIC_LIMITS, parse_nic_text

LIMITS = Limits(max_bytes=64 * 1024, max_depth=8)


def reason(data: bytes | str, limits: Limits = LIMITS) -> str:
    with pytest.raises(DocumentError) as err:
        load_json(data, limits)
    return err.value.reason


def test_a_plain_document_decodes() -> None:
    doc = {"a": [1, 2.5, "x", None, True, {"b": -3}], "ü": "é"}
    assert load_json(json.dumps(doc).encode(), LIMITS) == doc


@pytest.mark.parametrize("depth", [9, 1000, 30_000])
def test_too_deep_is_refused_before_decoding(depth: int) -> None:
    roomy = Limits(max_bytes=1024 * 1024, max_depth=8)
    assert "nested deeper than 8 levels" in reason("[" * depth + "]" * depth, roomy)
    assert "nested deeper than 8 levels" in reason('{"a":' * depth + "1" + "}" * depth, roomy)


def test_exactly_the_limit_is_accepted() -> None:
    assert load_json("[" * 8 + "]" * 8, LIMITS) == [[[[[[[[]]]]]]]]


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"s": "[" * 500 + '\\"{' * 100})
    assert load_json(text, LIMITS) == json.loads(text)
    check_json_depth('"\\\\"' + "[]", LIMITS)  # an escaped backslash ends the string


def test_size_is_checked_first() -> None:
    assert "larger than 65536 bytes" in reason(b" " * (64 * 1024 + 1))
    assert "larger than" in reason("é" * (32 * 1024 + 1))  # bytes, not characters


@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "9" * 5000, "1" * (MAX_NUMBER_CHARS + 1), "0." + "1" * 5000])
def test_long_numbers_are_refused(literal: str) -> None:
    assert "number with more than" in reason(f'{{"a": {literal}}}')


def test_a_number_at_the_limit_decodes() -> None:
    assert load_json("9" * MAX_NUMBER_CHARS, LIMITS) == int("9" * MAX_NUMBER_CHARS)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_finite_numbers_are_refused(literal: str) -> None:
    assert "not JSON" in reason(f"[{literal}]") or "out of range" in reason(f"[{literal}]")


def test_lone_surrogates_are_refused_with_their_path() -> None:
    with pytest.raises(DocumentError) as err:
        load_json('{"w": {"ssid": "\\ud800x"}}', LIMITS)
    assert err.value.path == "w.ssid" and "lone UTF-16 surrogate" in err.value.reason
    assert "\\ud800" in err.value.reason  # shown escaped, printable
    with pytest.raises(DocumentError) as err:
        load_json('[1, ["\\udfff"]]', LIMITS)
    assert err.value.path == "[1][0]"
    assert "surrogate" in reason('{"\\udc00": 1}')


def test_a_surrogate_pair_is_text() -> None:
    assert load_json('["\\ud83d\\ude00"]', LIMITS) == ["\U0001f600"]


def test_duplicate_keys_are_refused() -> None:
    assert "twice" in reason('{"interface": "eth0", "interface": "wl0"}')


def test_bad_utf8_and_bad_json() -> None:
    assert "not UTF-8" in reason(b'{"a": "\xff"}')
    assert "not valid JSON" in reason("{")
    assert "not valid JSON" in reason("")


def test_toml_depth_numbers_and_dotted_keys() -> None:
    limits = Limits(max_bytes=1024 * 1024, max_depth=8)
    assert load_toml('a = [[1]]\n[b]\nc = "[[[[[[[[[[[["\n', limits) == {"a": [[1]], "b": {"c": "[" * 12}}
    for text in ("a = " + "[" * 1000 + "]" * 1000, "a = " + "{x=" * 500 + "1" + "}" * 500,
                 "a." * 20_000 + "b = 1", "[" + "a." * 20_000 + "b]", "\"q\" . " * 40 + "b = 1"):
        with pytest.raises(DocumentError, match="nested deeper than 8"):
            load_toml(text, limits)
    with pytest.raises(DocumentError, match="more than 40 digits"):
        load_toml("a = " + "9" * 5000, limits)
    with pytest.raises(DocumentError, match="not valid TOML"):
        load_toml('a = "\\ud800"', limits)


def test_nic_text_limits_and_errors_are_validation_errors() -> None:
    assert NIC_LIMITS.max_depth == 32 and NIC_LIMITS.max_bytes == 64 * 1024
    deep = '{"interface": "eth0", "proxyconfig": ' + "[" * 1000 + "]" * 1000 + "}"
    with pytest.raises(ValidationError, match="nested deeper than 32 levels"):
        parse_nic_text(deep.encode())
    with pytest.raises(ValidationError, match="more than 40 characters"):
        parse_nic_text(b'{"interface": "eth0", "x": ' + b"9" * 5000 + b"}")
    with pytest.raises(ValidationError) as err:
        parse_nic_text(b'{"interface": "wl0", "wificonfig": {"ssid": "\\ud800", "key": null}}')
    assert err.value.path == "wificonfig.ssid"
    assert parse_nic_text(b'{"interface": "eth0"}').interface == "eth0"


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("json", '\\"' * 30_000),  # every quote an opener whose string never closes
        ("json", '"' + "a" * 60_000),
        ("toml", "a" * 60_000),  # one bare word: a backtracking scan is quadratic here
        ("toml", '"""\\"' * 12_000),
        ("toml", "'''" + "x" * 60_000),
        ("toml", '"\\"' * 20_000),
    ],
)
def test_the_scans_are_linear_on_pathological_text(kind: str, text: str) -> None:
    # Quadratic scans took minutes on these; linear ones take milliseconds. 2 s tolerates a loaded CI.
    import time

    limits = Limits(max_bytes=1024 * 1024, max_depth=32)
    started = time.monotonic()
    with pytest.raises(DocumentError):
        (load_json if kind == "json" else load_toml)(text, limits)
    assert time.monotonic() - started < 2.0


def test_toml_scan_agrees_with_tomllib_on_strings_and_keys() -> None:
    import tomllib

    limits = Limits(max_bytes=64 * 1024, max_depth=8)
    for text in ['a = """x""""\nb = [[1]]', "s = '''a'''''\nt = {x = [1, 2]}", 'k."a.b".c = 1\n[t."u"]\nv = 1.5e3',
                 'x = "a#b" # c [[[[[[[[[[\ny = 1979-05-27T07:32:00Z', 'p = """\nm "" \\""" [[[[[[[[[[\n"""\nq=["["]',
                 "h = 0x" + "f" * 100]:
        assert load_toml(text, limits) == tomllib.loads(text)
