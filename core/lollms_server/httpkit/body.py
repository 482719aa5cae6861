"""Reading request bodies within the `[server]` bounds: size, time, values, form fields.

Every body the server reads goes through here. A declared `Content-Length` over the route's
limit is a 413 before a byte is read; a body that has not fully arrived after `body_timeout_s`
is a 408; a JSON body with more separators than `max_json_values` is a 413 as soon as they
arrive (parsing a body of millions of tiny values would hold the interpreter for seconds); a
form with more than `max_form_fields` fields (`max_form_parts` parts), or a text field over
`max_form_field_kb`, is a 413.
The connection is closed after each of these, so the rest of the body is never read.

A client that sends `Expect: 100-continue` hears `100 Continue` only here, when its body is
first read: after auth and the declared-size check, so a refused body is never sent.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, HttpVersion11, MultipartReader, hdrs, web
from aiohttp.compression_utils import HAS_BROTLI, HAS_ZSTD
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ..errors import (
    InvalidRequest,
    LollmsError,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from ..keys import CONFIG
from ..request_limits import RequestLimits

# a part is read in chunks that are searched for the boundary and the rest pushed back: a big
# chunk per tiny field would copy the whole body again for each field
FIELD_CHUNK = 8 * 1024
FILE_CHUNK = 64 * 1024
CONTINUED = "lollms.continued"  # request key: `100 Continue` was sent


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart form."""

    filename: str
    content_type: str
    data: bytes


def limits_of(request: web.Request) -> RequestLimits:
    """The request bounds of the app serving `request`."""
    return request.app[CONFIG].limits


def closing(error: LollmsError) -> LollmsError:
    """Mark an error so that its response closes the connection (the body is left unread)."""
    error.extra_headers["Connection"] = "close"
    return error


def _too_large(what: str, limit: int, key: str) -> LollmsError:
    return closing(PayloadTooLarge(f"{what} is larger than {limit} bytes (server setting {key})"))


#: the request body codings aiohttp decodes here (br and zstd when their packages are installed)
BODY_ENCODINGS = ("gzip", "deflate", *(["br"] if HAS_BROTLI else []),
                  *(["zstd"] if HAS_ZSTD else []), "identity")  # fmt: skip


def _check_declared(request: web.Request, limit: int, key: str) -> None:
    """The body's declared length within the limit, its coding one that is decoded here: any
    other (`br` without Brotli, `compress`, a list such as `gzip, br`) is a 415 naming them
    (aiohttp would read a coding it does not know as plain bytes)."""
    coding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower() or "identity"
    if coding not in BODY_ENCODINGS:
        error = UnsupportedMediaType(
            f"request bodies may be encoded with {', '.join(BODY_ENCODINGS)}; "
            f"not {request.headers[hdrs.CONTENT_ENCODING][:64]!r}"
        )
        error.extra_headers["Accept-Encoding"] = ", ".join(BODY_ENCODINGS)
        raise closing(error)
    if request.content_length is not None and request.content_length > limit:
        raise _too_large("the request body", limit, key)


async def continue_later(request: web.Request) -> None:
    """The expect handler of every core route: an unknown expectation is a 417; `100 Continue`
    waits for the body's first read (aiohttp's default sends it before any check)."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version == HttpVersion11 and expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")


async def _send_continue(request: web.Request) -> None:
    """`100 Continue`, once, to a client that waits for it before sending its body."""
    if (
        request.version == HttpVersion11
        and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue"
        and not request.get(CONTINUED)
    ):
        request[CONTINUED] = True
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own size starts after it


def _timed_out(limits: RequestLimits) -> LollmsError:
    return closing(
        RequestTimeout(
            f"the request body did not arrive within {limits.body_timeout_s:g} s "
            "(server setting body_timeout_s)"
        )
    )


async def read_body(request: web.Request, *, media: bool = False, json: bool = False) -> bytes:
    """The raw body, within the route's size limit (`media`: max_body_mb, else
    max_text_body_mb) and body_timeout_s; `json` also counts separators against max_json_values."""
    limits = limits_of(request)
    limit, key = limits.body_limit(media)
    _check_declared(request, limit, key)
    await _send_continue(request)
    body = bytearray()
    separators = 0
    # a body already received whole is read without waiting: no timer to arm and cancel
    timer: AbstractAsyncContextManager[object] = (
        nullcontext() if request.content.is_eof() else asyncio.timeout(limits.body_timeout_s)
    )
    try:
        async with timer:
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > limit:
                    raise _too_large("the request body", limit, key)
                if json:
                    separators += chunk.count(b",")
                    if separators >= limits.max_json_values:
                        raise closing(
                            PayloadTooLarge(
                                f"the JSON body holds more than {limits.max_json_values} values "
                                "(commas counted, strings included; server setting "
                                "max_json_values)"
                            )
                        )
    except TimeoutError as exc:
        raise _timed_out(limits) from exc
    except (HttpProcessingError, RequestPayloadError) as exc:
        raise closing(InvalidRequest(f"malformed request body: {_why(exc)}")) from exc
    return bytes(body)


def _why(exc: Exception) -> str:
    # the parser's errors (a body that cannot be decoded) reach us as a RequestPayloadError
    # caused by them
    cause = exc if isinstance(exc, HttpProcessingError) else exc.__cause__
    return cause.message if isinstance(cause, HttpProcessingError) else str(exc)


async def read_form(request: web.Request, *, media: bool = True) -> dict[str, Any]:
    """A multipart form: text fields as strings (repeated names as lists), files as
    UploadedFile; at most max_form_fields parts, text fields up to max_form_field_kb."""
    if not request.content_type.startswith("multipart/"):
        raise UnsupportedMediaType("send this endpoint a multipart/form-data body")
    limits = limits_of(request)
    limit, key = limits.body_limit(media)
    _check_declared(request, limit, key)
    await _send_continue(request)
    fields: dict[str, Any] = {}
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            reader = await request.multipart()
            total = 0
            count = 0
            while (part := await reader.next()) is not None:
                count += 1
                if count > limits.max_form_parts:
                    raise _too_many_fields(limits.max_form_parts, "max_form_parts")
                if not isinstance(part, BodyPartReader) or not part.name:
                    if isinstance(part, MultipartReader):
                        raise InvalidRequest("nested multipart bodies are not accepted")
                    await asyncio.sleep(0)
                    continue
                is_file = part.filename is not None
                cap = limit - total if is_file else min(limit - total, limits.max_form_field_bytes)
                data = await _read_part(part, cap, is_file, limits, (limit, key))
                total += len(data)
                value: Any
                if is_file:
                    ctype = part.headers.get("Content-Type", "application/octet-stream")
                    value = UploadedFile(part.filename or "", ctype, data)
                else:
                    value = data.decode("utf-8", errors="replace")
                _add_field(fields, part.name, value)
                await asyncio.sleep(0)  # parsing a part's headers is slow in aiohttp: let others in
    except TimeoutError as exc:
        raise _timed_out(limits) from exc
    except (ValueError, AssertionError, HttpProcessingError, RequestPayloadError) as exc:
        raise closing(InvalidRequest(f"malformed multipart body: {_why(exc)}")) from exc
    return fields


async def _read_part(
    part: BodyPartReader, cap: int, is_file: bool, limits: RequestLimits, body: tuple[int, str]
) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(FILE_CHUNK if is_file else FIELD_CHUNK):
        data += chunk
        if len(data) > cap:
            if is_file or cap < limits.max_form_field_bytes:
                raise _too_large("the upload", *body)
            raise closing(
                PayloadTooLarge(
                    f"form field {part.name!r} is larger than {limits.max_form_field_bytes} "
                    "bytes (server setting max_form_field_kb)",
                    param=part.name,
                )
            )
    return bytes(data)


def _too_many_fields(limit: int, key: str) -> LollmsError:
    return closing(PayloadTooLarge(f"the form has more than {limit} fields (server setting {key})"))


def _add_field(fields: dict[str, Any], raw_name: str, value: Any) -> None:
    name = raw_name.removesuffix("[]")
    if name in fields:
        previous = fields[name]
        if isinstance(previous, list):
            previous.append(value)
        else:
            fields[name] = [previous, value]
    else:
        fields[name] = [value] if raw_name.endswith("[]") else value


async def read_urlencoded(request: web.Request) -> dict[str, Any]:
    """An urlencoded form (repeated names as lists), within the same bounds as a multipart one."""
    limits = limits_of(request)
    raw = (await read_body(request)).decode("utf-8", errors="replace")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=limits.max_form_fields)
    except ValueError as exc:
        raise _too_many_fields(limits.max_form_fields, "max_form_fields") from exc
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if len(value) > limits.max_form_field_bytes:
            raise PayloadTooLarge(
                f"form field {name[:64]!r} is larger than {limits.max_form_field_bytes} bytes "
                "(server setting max_form_field_kb)",
                param=name[:64],
            )
        _add_field(fields, name, value)
    return fields
