"""Typed service arguments from untyped input (a JSON body, CLI values), with the
decoder's complaint turned into the service error that names the field."""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Any, TypeVar

import msgspec

from gateway import errors

T = TypeVar("T")

# msgspec ends its messages with "- at `$.field`" or "- at `$.field[0]`".
_PATH = re.compile(r" - at `\$\.?([A-Za-z0-9_]*)[^`]*`$")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def validation_error(exc: msgspec.ValidationError) -> errors.ValidationFailed:
    message = str(exc)
    field = None
    for pattern in (_PATH, _UNKNOWN, _MISSING):
        match = pattern.search(message)
        if match:
            field = match.group(1) or None
            break
    return errors.ValidationFailed(field, _PATH.sub("", message))


# The bytes a depth count ignores, and the sign of those it keeps.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# In JSON a backslash is always followed by one of `"\/bfnrtu`: they stay next to it.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\/bfnrtu')
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # opening +1, closing -1 (as signed bytes)
_PAIR = b"\x01\xff"  # an innermost pair: an opening bracket right before a closing one
_PASSES = 32


def too_deep(data: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than `limit` levels deep.

    msgspec cannot be told a depth (it stops near the interpreter's recursion limit), so
    this counts. Most bodies hold fewer opening brackets than the limit, which one C-speed
    pass proves. The rest drop their strings, whose brackets do not nest, with C-speed
    bytes operations (a regex costs ten times more on code-heavy bodies), then take a
    running sum over the brackets left. On bytes that are not JSON the answer is only
    a guess; the decoder refuses those anyway."""
    brackets = data.translate(None, _NOT_BRACKETS)  # one pass; cheaper than two counts
    if len(brackets) <= limit or brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    # Only brackets, quotes, backslashes and what may follow a backslash matter (a quarter
    # of the bytes or less). Escaped backslashes go first, so that what is left of `\"` is
    # an escaped quote; then every other piece between quotes is outside a string.
    unescaped = data.translate(None, _NOT_STRUCTURE).replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = b"".join(unescaped.split(b'"')[::2]).translate(_SIGNS, _NOT_BRACKETS)
    if skeleton.count(1) <= limit:
        return False
    # Each pass deletes the innermost pairs (C speed), so a body `depth` levels deep
    # empties in `depth` passes: a few for real requests, however many brackets they hold.
    # A running sum (a Python-level walk, ~30 ns a bracket) measures only what deeper
    # nesting is left after the first passes, so hostile bodies stay linear.
    for passes in range(1, _PASSES + 1):
        inner = skeleton.replace(_PAIR, b"")
        if len(inner) == len(skeleton):
            return False  # unbalanced: not JSON, which the decoder refuses
        if not inner:
            return passes > limit
        if passes >= limit:
            return True  # something is still nested below `limit` levels
        skeleton = inner
    return _PASSES + max(accumulate(array("b", skeleton))) > limit


def json_body(data: bytes, cls: type[T], max_depth: int) -> T:
    """Decode a JSON body into `cls`; InvalidJson when it is not JSON at all or nests
    deeper than `max_depth`."""
    if max_depth and too_deep(data, max_depth):
        raise InvalidJson(f"the request body nests JSON deeper than {max_depth} levels")
    try:
        return msgspec.json.decode(data, type=cls)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError:
        raise InvalidJson("the request body is not valid JSON") from None
    except RecursionError:  # msgspec's fixed depth limit (about 1,000 levels)
        raise InvalidJson("the request body nests JSON too deeply") from None


def convert(values: dict[str, Any], cls: type[T]) -> T:
    """`cls` from loosely typed values (strings from a command line or a query string)."""
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


class InvalidJson(errors.InvalidRequest):
    """The body is not JSON (the admin API answers 400 bad_request)."""
