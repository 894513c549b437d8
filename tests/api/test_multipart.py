"""The streaming multipart/form-data parser (api/multipart.py): the same body fed whole, byte
by byte and split at every position gives the same parts; malformed bodies and oversized
header blocks are refused; the parser never holds more than a chunk plus a delimiter.
"""

from __future__ import annotations

import pytest

from api.multipart import (
    HEADER_BLOCK_MAX_BYTES,
    PARTS_MAX,
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    boundary_of,
)

BODY = (b"preamble to ignore\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="sql"\r\n\r\n'
        b"SELECT 1\r\n"
        b"--XyZ  \r\n"  # transport padding after a delimiter
        b'Content-Disposition: form-data; name="file:a"; filename="Q3 \\"x\\".pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n"
        b"\r\n--XyNOT-a-delimiter\r\n--Xy\x00\xff\r\n"
        b"--XyZ\r\n"
        b"Content-Disposition: form-data; name=\"file:b\"; filename*=UTF-8''na%C3%AFve.txt\r\n"
        b"\r\n"
        b"\r\n"
        b"--XyZ--\r\nepilogue")


def parse(chunks: list[bytes], boundary: str = "XyZ") -> list[tuple]:
    parser = MultipartParser(boundary)
    parts: list[tuple] = []
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, PartStart):
                parts.append((event.name, event.filename, event.content_type, b""))
            elif isinstance(event, PartData):
                name, filename, ctype, data = parts[-1]
                parts[-1] = (name, filename, ctype, data + event.data)
            else:
                assert isinstance(event, PartEnd)
                parts[-1] = (*parts[-1], "end")
        assert len(parser._buffer) <= len(chunk) + HEADER_BLOCK_MAX_BYTES
    parser.close()
    return parts


EXPECTED = [
    ("sql", None, None, b"SELECT 1", "end"),
    ("file:a", 'Q3 "x".pdf', "application/pdf",
     b"\r\n--XyNOT-a-delimiter\r\n--Xy\x00\xff", "end"),
    ("file:b", "naïve.txt", None, b"", "end"),
]


def test_multipart__whole_bytewise_and_every_split__same_parts() -> None:
    assert parse([BODY]) == EXPECTED
    assert parse([BODY[i:i + 1] for i in range(len(BODY))]) == EXPECTED
    for cut in range(len(BODY) + 1):
        assert parse([BODY[:cut], BODY[cut:]]) == EXPECTED, cut


def test_multipart__body_data_is_streamed_not_buffered() -> None:
    # 1 MiB of part data in 4 KiB chunks: each feed hands almost all of its chunk back.
    parser = MultipartParser("b")
    parser.feed(b'--b\r\nContent-Disposition: form-data; name="file:x"\r\n\r\n')
    for _ in range(256):
        events = parser.feed(b"z" * 4096)
        assert sum(len(e.data) for e in events if isinstance(e, PartData)) >= 4096 - 6
        assert len(parser._buffer) < 8
    parser.feed(b"\r\n--b--")
    parser.close()


@pytest.mark.parametrize("body, problem", [
    (b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end", "ended before"),
    (b"nothing at all", "ended before"),
    (b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", "Content-Disposition"),
    (b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--", "no name"),
    (b"--XyZ\r\nno colon here\r\n\r\nx\r\n--XyZ--", "header line"),
    (b"--XyZ junk\r\n", "boundary line"),
    (b"--XyZ\r\nX-Big: " + b"a" * HEADER_BLOCK_MAX_BYTES + b"\r\n\r\n", "too large"),
])
def test_multipart__malformed__refused(body: bytes, problem: str) -> None:
    parser = MultipartParser("XyZ")
    with pytest.raises(MultipartError, match=problem):
        parser.feed(body)
        parser.close()


def test_multipart__boundary_parameter() -> None:
    assert boundary_of("multipart/form-data; boundary=abc") == "abc"
    assert boundary_of('Multipart/Form-Data; charset=x; boundary="a b;c"') == "a b;c"
    for bad in ("multipart/form-data", "multipart/form-data; boundary=",
                "multipart/form-data; boundary=" + "x" * 71):
        with pytest.raises(MultipartError):
            boundary_of(bad)


def test_multipart__parts_max__exactly_at_the_limit_ok_one_more_refused() -> None:
    # PARTS_MAX counts every part (fields and files alike): PARTS_MAX parts parse, the
    # next part's headers are refused before its body is read (issue 7).
    part = b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n'
    parser = MultipartParser("b")
    events = parser.feed(part * PARTS_MAX + b"--b--\r\n")
    parser.close()
    assert sum(isinstance(e, PartStart) for e in events) == PARTS_MAX
    parser = MultipartParser("b")
    with pytest.raises(MultipartError, match=f"more than {PARTS_MAX} multipart parts"):
        parser.feed(part * (PARTS_MAX + 1) + b"--b--\r\n")
