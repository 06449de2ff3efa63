"""Logging of the ``econome`` command: format, third-party levels, and redaction of secrets.

Two defences keep credentials out of the logs:

* the loggers of the HTTP, MQTT and InfluxDB libraries are set to WARNING,
  whatever ``ECONOME_LOG_LEVEL`` says: at DEBUG they print URLs, headers and
  connection details;
* a :class:`RedactingFilter` on the handler replaces every configured secret
  value (InfluxDB password and token, MQTT and SMTP passwords, and the
  base64 form of ``user:password`` that Basic authentication sends) with
  ``***`` in the message, its arguments and any traceback. A secret of
  ``MIN_SECRET_LENGTH`` (4) characters or more is replaced wherever it appears;
  a shorter one (1 to 3 characters) wherever it stands as a whole token, not
  between letters or digits: replacing every "a" of the logs would hide them and
  protect nothing, while ``p=ab&`` or ``password ab`` is still redacted.

>>> f = RedactingFilter(["s3cret-pw", "ab"])
>>> f.redact("login with s3cret-pw failed")
'login with *** failed'
>>> f.redact("u=admin&p=ab, a cab")
'u=admin&p=***, a cab'
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterable

__all__ = ["MIN_SECRET_LENGTH", "THIRD_PARTY_LOGGERS", "RedactingFilter", "env_secrets", "setup_logging"]

MIN_SECRET_LENGTH = 4
"""Shorter values are redacted only as whole tokens: replacing every "a" of the logs would hide everything."""

THIRD_PARTY_LOGGERS = ("httpx", "httpcore", "urllib3", "influxdb_client", "paho", "mail.log", "asyncio.sslproto")
"""Libraries that log URLs, headers or protocol traffic at DEBUG/INFO: capped at WARNING."""

_SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "PASSPHRASE")


class RedactingFilter(logging.Filter):
    """Replaces every known secret value with ``***`` in the records it sees.

    Install it on a handler, so that it also covers the records of other
    libraries' loggers. Secrets may be added later (:meth:`add`), for instance
    once the inventory names the MQTT password variables.

    Args:
        secrets: the secret values.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self._short: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these values too (with their base64 forms as Basic authentication sends them)."""
        for value in secrets:
            for form in (value, base64.b64encode(value.encode()).decode()):
                if form and form not in self._secrets:
                    self._secrets.append(form)
        # Longest first, so that a secret containing another one is replaced whole.
        self._secrets.sort(key=len, reverse=True)
        short = [re.escape(s) for s in self._secrets if len(s) < MIN_SECRET_LENGTH]
        # A short secret counts only where no letter or digit touches it (a whole token).
        self._short = re.compile(rf"(?<![^\W_])(?:{'|'.join(short)})(?![^\W_])") if short else None

    def add_basic_auth(self, username: str, password: str) -> None:
        """Redact the ``Authorization: Basic`` value of this user and password."""
        self.add([base64.b64encode(f"{username}:{password}".encode()).decode()])

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***`` (one shorter than 4 characters as a whole token)."""
        for secret in self._secrets:
            if len(secret) >= MIN_SECRET_LENGTH and secret in text:
                text = text.replace(secret, "***")
        if self._short is not None:
            text = self._short.sub("***", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def env_secrets(names: Iterable[str] = ()) -> list[str]:
    """Values of the named environment variables, and of every ``ECONOME_*`` variable that names a secret.

    A variable names a secret when its name contains PASSWORD, TOKEN, SECRET or
    PASSPHRASE (``ECONOME_INFLUX_PASSWORD``, ``ECONOME_MQTT_PASSWORD``,
    ``ECONOME_SMTP_PASSWORD``…). ``*_FILE`` variables hold paths, not secrets.
    """
    wanted = set(names)
    wanted.update(
        name
        for name in os.environ
        if name.startswith("ECONOME_") and not name.endswith("_FILE") and any(w in name for w in _SECRET_WORDS)
    )
    return [value for name in sorted(wanted) if (value := os.environ.get(name))]


def setup_logging(level: str, secrets: Iterable[str] = ()) -> RedactingFilter:
    """Configure the root logger for the command line and return its redacting filter.

    Args:
        level: ``DEBUG``, ``INFO``…
        secrets: values never to print.
    """
    redactor = RedactingFilter(secrets)
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    # pymodbus logs every failed request at ERROR; our collector logs state changes instead.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return redactor
