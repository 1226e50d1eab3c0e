"""Typed service arguments from untyped input (a JSON body, CLI values), with the
decoder's complaint turned into the service error that names the field."""

from __future__ import annotations

import re
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


def json_body(data: bytes, cls: type[T]) -> T:
    """Decode a JSON body into `cls`; InvalidJson when it is not JSON at all."""
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
