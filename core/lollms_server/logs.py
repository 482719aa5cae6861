"""Logging set-up: one JSON object per line, or plain text; `auto` (the default) picks text
when stderr is a terminal and JSON otherwise (a service manager, a container, a file).

Both formats mask credentials inside URLs (`masking.mask_text`). Text lines escape control
characters, so a client's path, model name or header cannot forge a log line or drive a
terminal (JSON escapes them already). A request aiohttp could not parse (it answered 400) is
one debug line, not an error with a traceback: any client can send millions of them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from .json_encoding import one_shot
from .masking import mask_text
from .trace import current_trace

LOG_FORMATS = ("auto", "json", "text")
STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
#: `extra={LINE_FIELDS: {...}}` gives a JSON line its fields in one dict (the request log's
#: line, one per request): neither logging nor the formatter visits them one record attribute
#: at a time; a text line writes them after its message as `name=value`
LINE_FIELDS = "line_fields"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ENCODER = one_shot(json.JSONEncoder(default=str))  # json.dumps(default=...): one per line
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return match.group(0).encode("unicode_escape").decode("ascii")


def escape_controls(text: str) -> str:
    """`text` with control characters (and unpaired surrogates) written as escapes."""
    return _CONTROL.sub(_escape, text)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and any `extra` fields."""

    _second: tuple[int, str] = (-1, "")  # the last second formatted (one line per request)

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of `record`."""
        second = int(record.created)
        if second != self._second[0]:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, stamp)
        line: dict[str, Any] = {
            "time": f"{self._second[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        attributes = vars(record)
        for key, value in attributes.get(LINE_FIELDS, attributes).items():
            if key not in STANDARD and value is not None:
                line[key] = mask_text(value) if isinstance(value, str) else value
        trace = current_trace()  # a line logged while a request runs names it (and its trace)
        if trace is not None:
            line.setdefault("request_id", trace.request_id)
            if trace.span_ids is not None:
                line.setdefault("trace_id", trace.span_ids[0])
        if record.exc_info:
            line["exception"] = mask_text(self.formatException(record.exc_info))
        return _ENCODER(line)


class TextFormatter(logging.Formatter):
    """Formats a record as one text line, control characters escaped, credentials masked."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The record's line, escaped and masked; a line's fields (`LINE_FIELDS`, the request
        log's) follow its message as `name=value`."""
        text = super().formatMessage(record)
        fields = vars(record).get(LINE_FIELDS)
        if fields:
            text += "".join(f" {k}={v}" for k, v in fields.items() if v is not None)
        return escape_controls(mask_text(text))

    def formatException(self, ei: Any) -> str:
        """The traceback: its lines kept, anything else escaped and masked."""
        text = mask_text(super().formatException(ei))
        return _CONTROL_BUT_NEWLINE.sub(_escape, text)


class BadRequests(logging.Filter):
    """aiohttp's log of a request it could not parse (400 sent): one debug line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote the record when it is about a malformed request; keep it when debugging."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg = f"{record.getMessage()}: {exc.message}"
        record.args, record.exc_info, record.exc_text = None, None, None
        return logging.getLogger().isEnabledFor(logging.DEBUG)


BAD_REQUESTS = BadRequests()


def resolved_format(log_format: str) -> str:
    """`json` or `text`; `auto` is text when stderr is a terminal, else JSON."""
    if log_format == "auto":
        return "text" if sys.stderr.isatty() else "json"
    return log_format


def setup_logging(level: str, log_format: str) -> None:
    """Configure the root logger for `serve` (`log_format`: one of LOG_FORMATS)."""
    handler = logging.StreamHandler()
    if resolved_format(log_format) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.server").addFilter(BAD_REQUESTS)
    # neither format writes the thread, the process or the calling line: skip collecting them
    # for every record (the logging HOWTO's "Optimization"; one line is logged per request)
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
