"""Keep exchange credentials out of logs, error lines and tracebacks.

Every secret value the key store hands out (deploy.secrets) is registered here; ``scrub`` replaces those
values, and anything that looks like an api-key / secret / signature parameter or header, with ``****``.
``install()`` puts the ``RedactingFilter`` on the process's logging: on the root logger's handlers and on
every record as it is created (Faust and the supervisor add their handlers after start-up), and scrubs
uncaught tracebacks. Standard library only: it runs in every process, the CLI included.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback

MASK = "****"
_lock = threading.Lock()
_values: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first: a value containing another is masked whole

# api-key / secret / signature as a query parameter, JSON field or HTTP header (Binance X-MBX-APIKEY,
# Coinbase CB-ACCESS-*, a Bearer token), whatever the venue's spelling
_PATTERN = re.compile(
    r"""(?ix)
    (
      (?:api[_-]?key|apikey|api[_-]?secret|secret(?:[_-]?key)?|signature|passphrase|x-mbx-apikey
         |cb-access-(?:key|sign|passphrase)|x-vault-token|vault[_-]?token|authorization)
      ["']?\s*[=:]\s*["']?
      (?:bearer\s+)?
    )
    ([^\s&"',;}\]]+)
    """
)


def register(value: str | None) -> None:
    """Mask ``value`` (and each long line of a multi-line one, e.g. a PEM key) from now on, in this process."""
    global _ordered
    if not value or len(value) < 8:  # shorter strings would mask ordinary words; no exchange key is this short
        return
    parts = {value} | {line.strip() for line in value.splitlines() if len(line.strip()) >= 16}
    with _lock:
        if parts <= _values:
            return
        _values.update(parts)
        _ordered = tuple(sorted(_values, key=len, reverse=True))


def scrub(text: str) -> str:
    """``text`` with every registered secret and every key/secret/signature parameter masked."""
    if not text:
        return text
    for value in _ordered:
        if value in text:
            text = text.replace(value, MASK)
    return _PATTERN.sub(lambda m: m.group(1) + MASK, text)


def scrub_exception(exc: BaseException) -> str:
    """The first line of an exception's message, scrubbed: what a one-line error may show of it."""
    text = str(exc).strip() or type(exc).__name__
    return scrub(text.splitlines()[0])


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments merged in), traceback and stack text with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_tradeloop_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, not ours
            return True
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            # formatters use exc_text when it is set: the traceback is formatted once, here, scrubbed
            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._tradeloop_scrubbed = True
        return True


_FILTER = RedactingFilter()
_installed = False


def install() -> None:
    """Redact every log record of this process and its uncaught tracebacks (idempotent)."""
    global _installed
    root = logging.getLogger()
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        _FILTER.filter(record)
        return record

    logging.setLogRecordFactory(redacted_record)
    previous_hook = sys.excepthook

    def scrubbed_hook(kind, value, tb):
        if not _values:
            return previous_hook(kind, value, tb)
        sys.stderr.write(scrub("".join(traceback.format_exception(kind, value, tb))))

    sys.excepthook = scrubbed_hook
