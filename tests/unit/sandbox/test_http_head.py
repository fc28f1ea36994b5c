"""The runtime answer's head (``sandbox/http._parse_head``): a plain head read in a few
calls must give what the line-by-line reading gives, for every head."""

from __future__ import annotations

import pytest

from squall.sandbox.http import ProtocolError, _parse_head


def by_lines(head: bytes) -> tuple[int, dict[str, str], bool]:
    """The line-by-line reading (the parser as it was): lower-cased names, values as sent."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or len(rest) < 3 or not rest[:3].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return int(rest[:3]), headers, keep


HEADS = [
    "HTTP/1.1 200 OK",
    "HTTP/1.1 200 OK\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12",
    "HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nContent-Type: application/json; charset=utf-8"
    '\r\nContent-Length: 2\r\nETag: W/"2-vyGp6PvFo4RvsFtPoIWeCReyIC8"\r\nDate: Mon, 07 Dec'
    " 2026 21:50:00 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5",
    "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3",
    "HTTP/1.1 200 OK\r\nCONNECTION:  Close \t\r\nContent-Length:7",
    "HTTP/1.1 200 OK\r\n  Content-Length  :  \xa05\x85 \r\ncontent-length: 6",  # last wins
    "HTTP/1.1 200 OK\r\nX-A: b:c: d\r\n: empty name\r\nX-Empty:",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nContent-Length: 4",  # as written
    "HTTP/1.1 200 OK\r\nX-\xc0: \xc0\xe9",
    "HTTP/1.1 200 OK\r\nX-A: b\nX-B: c",  # a bare LF inside a line
    "HTTP/1.1 200 OK\r\nX-A: b\r\r\nX-C: d",  # a CR before the CRLF
    "HTTP/1.1 200 OK\r\nX-A\n: b",
    "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 1",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nno colon here",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nX-A: b",  # an empty line
    "HTTP/1.1 100 Continue",
    "HTTP/2 200 OK\r\nContent-Length: 1",
    "HTTP/1.1 2x0 OK\r\nContent-Length: 1",
]


def outcome(read: object, head: bytes) -> object:
    try:
        status, headers, keep = read(head)  # type: ignore[operator]
    except ProtocolError as e:
        return ("refused", str(e))
    # What the client reads of the headers (_Connection._head), and the rest as is.
    encoding = headers.get("transfer-encoding", "")
    length = headers.get("content-length")
    return status, keep, "chunked" in encoding, length and int(length), set(headers)


@pytest.mark.parametrize("text", HEADS)
def test_a_head_reads_as_line_by_line(text: str) -> None:
    head = text.encode("latin-1") + b"\r\n\r\n"
    assert outcome(_parse_head, head) == outcome(by_lines, head)


def test_the_transfer_encoding_is_matched_as_written() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nX-A: B\r\n\r\n"
    assert _parse_head(head) == by_lines(head)
