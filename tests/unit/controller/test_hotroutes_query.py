"""The hot route's query parameters: the same as Starlette's (``parse_qsl``, blank values
kept, the last of a name wins), with or without something to unquote."""

from __future__ import annotations

import urllib.parse

import pytest

from squall.controller.hotroutes import HotHeaders, HotRequest

QUERIES = [
    "",
    "blocking=true&result=true",
    "blocking=true&blocking=false",
    "a&b=&=c&&d==e&",
    "&&&",
    "timeout=60000;x=1",
    "a=%20b&c=d+e",  # to unquote: urllib's own path
    "n%61me=v%3Dw&x=+",
    "ü=ä&é",
]


@pytest.mark.parametrize("query", QUERIES)
def test_query_params_are_parse_qsl_with_blank_values(query: str) -> None:
    request = HotRequest("POST", HotHeaders([]), query.encode("latin-1", "replace"))
    text = query.encode("latin-1", "replace").decode("latin-1")
    assert request.query_params == dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


def test_headers_keep_the_first_of_a_repeated_name() -> None:
    headers = HotHeaders([(b"x-a", b"1"), (b"content-type", b"j"), (b"x-a", b"2")])
    assert dict(headers) == {"x-a": "1", "content-type": "j"}
    assert headers.raw[2] == (b"x-a", b"2")
