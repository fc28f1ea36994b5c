"""The Unix-socket HTTP client's framing of answers a runtime gets wrong or makes huge:
a body past the limit in a pipeline, a negative Content-Length, a huge chunk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_http import read_request, serving

from squall.sandbox.http import ProtocolError, UnixHttpClient

pytestmark = pytest.mark.anyio


async def test_a_negative_content_length_is_a_protocol_error(tmp_path: Path) -> None:
    # Given a runtime announcing a negative Content-Length
    async def negative(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}")
        await writer.drain()
        await reader.read()

    async with serving(tmp_path / "s.sock", negative):
        client = UnixHttpClient(tmp_path / "s.sock", max_response_bytes=1000)
        # When the client posts, then the answer is refused
        with pytest.raises(ProtocolError):
            await client.post("/run", b"{}")
        await client.aclose()
