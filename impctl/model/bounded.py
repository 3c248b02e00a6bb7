"""Decoding untrusted documents (a NIC, the state file, the config) within fixed bounds.

Pure: callers read the bytes (at most `limits.max_bytes + 1`) and hand them
over. The standard decoders fail on hostile input in ways that escape as
bugs: `json.loads` and `tomllib` recurse once per nesting level (RecursionError
at ~1000 levels), `int()` refuses literals over 4300 digits (ValueError),
and `json.loads` yields lone UTF-16 surrogates and NaN, which later crash or
mislead. So each document is checked, in this order and without recursion:
size, UTF-8, nesting depth (a scan of the text), number literals (length and
finiteness), duplicate keys, lone surrogates. Every failure raises
`DocumentError`, which callers turn into their own error (exit 2 for a NIC,
3 for state and config) naming the document.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from impctl.model.record import record


class DocumentError(Exception):
    """What is wrong with a document, as one line; the caller names the document."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path  # the JSON path of the offending value, "" for the whole document


@record
class Limits:
    max_bytes: int
    max_depth: int


# No number impctl reads needs more than a u64 (20 digits) or a repr'd float (~24 characters);
# 40 keeps int() well below Python's 4300-digit guard and float() from meaningless input.
MAX_NUMBER_CHARS = 40

_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON string (escapes included), a lone quote (a string never closed), or a bracket.
# Possessive (*+): no backtracking, so the scan is linear whatever the text.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+"|"|[\[\]{}]', re.DOTALL)
# TOML string bodies and bare words, matched at a known position, possessive for the same reason.
_TOML_BASIC = re.compile(r'(?:[^"\\\n]|\\.)*+"')
_TOML_ML_BASIC = re.compile(r'(?:[^"\\]|\\.|"(?!""))*+"""', re.DOTALL)
_TOML_BARE = re.compile(r"[A-Za-z0-9_\-]++")
_TOML_DIGITS = re.compile(r"[0-9_]++")


def show(text: str, limit: int = 40) -> str:
    """`text` quoted for an error message: escapes instead of control characters, cut to `limit`."""
    shown = repr(text)  # repr escapes controls and lone surrogates: the message stays printable
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _decode(data: bytes | str, limits: Limits) -> str:
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > limits.max_bytes:
        raise DocumentError(f"is larger than {limits.max_bytes} bytes")
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"is not UTF-8 text (byte {exc.start})") from None


def _too_deep(limits: Limits) -> DocumentError:
    return DocumentError(f"is nested deeper than {limits.max_depth} levels")


def check_json_depth(text: str, limits: Limits) -> None:
    """Raise unless every bracket of `text` is nested at most `limits.max_depth` deep."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        tok = m.group()
        if tok == '"':
            break  # a string that never closes: json.loads fails there, before any deeper structure
        if tok in "[{":
            depth += 1
            if depth > limits.max_depth:
                raise _too_deep(limits)
        elif tok in "]}":
            depth = max(0, depth - 1)


def _number(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise DocumentError(f"has a number with more than {MAX_NUMBER_CHARS} characters ({text[:12]}...)")


def _parse_int(text: str) -> int:
    _number(text)
    return int(text)


def _parse_float(text: str) -> float:
    _number(text)
    value = float(text)
    if not math.isfinite(value):
        raise DocumentError(f"has a number out of range ({text})")
    return value


def _parse_constant(name: str) -> Any:
    raise DocumentError(f"has {name}, which is not JSON")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Parsers disagree on which duplicate wins; a document meaning two things is refused.
            raise DocumentError(f"has the key {show(key)} twice in one object")
        out[key] = value
    return out


def _json_path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{show(part)}]"
    return out


def check_tree(doc: Any, limits: Limits) -> None:
    """Raise if a decoded document is deeper than allowed or holds a lone surrogate (iteratively)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise DocumentError(f"holds a lone UTF-16 surrogate ({show(value)}), which is not text",
                                    _json_path(path))
            continue
        if isinstance(value, dict | list):
            if len(path) >= limits.max_depth:
                raise _too_deep(limits)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, sub in items:
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise DocumentError(f"has a key with a lone UTF-16 surrogate ({show(key)})", _json_path(path))
                stack.append((sub, (*path, key)))


def load_json(data: bytes | str, limits: Limits) -> Any:
    """Decode one JSON document within `limits`; raises only DocumentError."""
    text = _decode(data, limits)
    check_json_depth(text, limits)
    try:
        doc = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant,
            object_pairs_hook=_pairs,
        )
    except json.JSONDecodeError as exc:
        raise DocumentError(f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # unreachable after check_json_depth; kept so no input can escape as a bug
        raise _too_deep(limits) from None
    check_tree(doc, limits)
    return doc


def _toml_string_end(text: str, i: int) -> int:
    """Where the TOML string starting at `i` ends, or len(text) if it never does (tomllib fails there)."""
    n = len(text)
    quote = text[i]
    if text.startswith(quote * 3, i):
        if quote == "'":
            end = text.find("\'\'\'", i + 3)
            end = n if end < 0 else end + 3
        else:
            m = _TOML_ML_BASIC.match(text, i + 3)
            end = m.end() if m else n
        # Up to two quotes right before the closing three belong to the content.
        for _ in range(2):
            if end < n and text[end] == quote:
                end += 1
        return end
    if quote == "'":
        close = text.find("\'", i + 1)
        newline = text.find("\n", i + 1)
        return n if close < 0 or 0 <= newline < close else close + 1
    m = _TOML_BASIC.match(text, i + 1)
    return m.end() if m else n


def check_toml_text(text: str, limits: Limits) -> None:
    """Raise before tomllib sees text it would recurse on, spend seconds on, or fail on with ValueError.

    A linear scan outside strings and comments: bracket nesting, dotted keys (tomllib
    takes ~10 s on 20,000 components, quadratic) and digit runs too long for int().
    """
    depth = 0
    chain = 0  # segments in the current dotted key (a.b."c" is 3)
    dot = False  # a dot since the last segment
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        segment_end = -1
        if c == "#":
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
            continue
        if c in "\"'":
            segment_end = _toml_string_end(text, i)
        elif c.isascii() and (c.isalnum() or c in "_-"):
            m = _TOML_BARE.match(text, i)
            assert m is not None
            digits = _TOML_DIGITS.match(text, i)
            if digits is not None and digits.end() - i > MAX_NUMBER_CHARS:
                raise DocumentError(f"has a number with more than {MAX_NUMBER_CHARS} digits ({text[i:i + 12]}...)")
            segment_end = m.end()
        if segment_end >= 0:
            chain = chain + 1 if dot else 1
            dot = False
            if chain > limits.max_depth:
                raise _too_deep(limits)
            i = segment_end
            continue
        if c == ".":
            dot = True
        elif c not in " \t":
            chain, dot = 0, False
            if c in "[{":
                depth += 1
                if depth > limits.max_depth:
                    raise _too_deep(limits)
            elif c in "]}":
                depth = max(0, depth - 1)
        i += 1


def load_toml(data: bytes | str, limits: Limits) -> dict[str, Any]:
    """Decode one TOML document within `limits`; raises only DocumentError."""
    import tomllib

    text = _decode(data, limits)
    check_toml_text(text, limits)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DocumentError(f"is not valid TOML: {exc}") from None
    except (ValueError, RecursionError) as exc:  # a number or nesting check_toml_text did not foresee
        raise DocumentError(f"is not valid TOML: {type(exc).__name__}") from None
    # Dotted keys and table headers nest without brackets: bound them on the result.
    check_tree(doc, limits)
    return doc
