"""The two error families mean what they say (ARCHITECTURE "Errors are data"): the
caller's fault is a 4xx `ClientError`; an upstream's or the gateway's own fault is a 5xx
`ServerError`, and only the upstreams' failures are `UpstreamError`s."""

from __future__ import annotations

import orjson

from gateway import errors


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def test_every_4xx_is_the_callers_fault_and_every_5xx_is_not() -> None:
    classes = _all_subclasses(errors.GatewayError)
    assert len(classes) > 8
    for cls in classes:
        if cls.status < 500:
            assert issubclass(cls, errors.ClientError), cls
        else:
            assert issubclass(cls, errors.ServerError) and not issubclass(cls, errors.ClientError), cls


def test_the_gateways_own_failures_are_not_upstream_errors() -> None:
    assert not issubclass(errors.InternalError, errors.UpstreamError)
    assert not issubclass(errors.ServiceUnavailable, errors.UpstreamError)  # database down, circuit open
    for upstream in (errors.UpstreamUnavailable, errors.UpstreamFailed, errors.Overloaded, errors.FallbackAccessDenied):
        assert issubclass(upstream, errors.UpstreamError)


def test_the_body_is_anthropics_error_shape() -> None:
    body = orjson.loads(errors.RateLimited("slow down").body("req-1"))
    assert body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
        "request_id": "req-1",
    }


def test_a_refused_bedrock_credential_is_a_500_telling_the_operator_to_act() -> None:
    exc = errors.FallbackAccessDenied("The security token included in the request is invalid.")
    assert (exc.status, exc.error_type, exc.recorded_class) == (500, "api_error", "bedrock_access_denied")
    assert "operator must fix" in exc.message and "security token" in exc.message
