"""Request helpers: list windows (skip/limit), query parameters, status of a record."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from starlette.requests import Request

from squall.controller.http import list_window, query_bool, query_int
from squall.controller.routes.actions import status_for
from squall.entities.activation import ActivationResponse, final_record
from squall.errors import BadRequest


def request(**query: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [],
            "query_string": urlencode(query).encode(),
        }
    )


@pytest.mark.parametrize(
    ("query", "window"),
    [
        ({}, (0, 30)),  # OpenWhisk's default page
        ({"limit": "0"}, (0, 200)),  # 0 means the maximum
        ({"limit": "200"}, (0, 200)),
        ({"limit": "1"}, (0, 1)),
        ({"skip": "5", "limit": "10"}, (5, 10)),
        ({"skip": "0"}, (0, 30)),
        ({"skip": "", "limit": ""}, (0, 30)),  # empty values count as absent
    ],
)
def test_list_window(query: dict[str, str], window: tuple[int, int]) -> None:
    assert list_window(request(**query), "actions") == window


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "201"}, "The value '201' is not in the range of 0 to 200 for rules."),
        ({"limit": "-1"}, "The value '-1' is not in the range of 0 to 200 for rules."),
        ({"skip": "-3"}, "The value '-3' is not greater than or equal to 0 for rules."),
        ({"skip": "many"}, "The value 'many' is not an integer for rules."),
        ({"limit": "2.5"}, "The value '2.5' is not an integer for rules."),
    ],
)
def test_list_window_errors(query: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest) as e:
        list_window(request(**query), "rules")
    assert e.value.message == message


def test_query_helpers() -> None:
    assert query_bool(request(), "blocking") is False
    assert query_bool(request(), "code", True) is True
    assert query_bool(request(blocking="true"), "blocking") is True
    assert query_bool(request(blocking="TRUE"), "blocking") is True
    assert query_bool(request(blocking="false"), "blocking", True) is False
    assert query_bool(request(blocking="yes"), "blocking") is False
    assert query_int(request(n="7"), "n", "x") == 7
    assert query_int(request(), "n", "x") is None


@pytest.mark.parametrize(
    ("status_code", "http"),
    [(0, 200), (1, 502), (2, 502), (3, 500)],
)
def test_status_of_a_blocking_answer(status_code: int, http: int) -> None:
    # success → 200, application/developer error → 502, internal error → 500
    record = final_record(
        namespace="g", name="a", subject="g", activation_id="a" * 32, start=1, end=2,
        response=ActivationResponse.of(status_code, {}),
    )  # fmt: skip
    assert status_for(record) == http
