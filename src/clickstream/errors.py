"""The exceptions of clickstream, sorted by what happens next.

* :class:`ConfigError`: a setting is invalid; fix it and start again.
* :class:`TransientError`: something outside us is not answering (yet); retrying may help.
* :class:`TerminalError`: retrying will not help; the message says what to do.

The CLI prints any :class:`ClickstreamError` as one line (a traceback only with ``--debug``).
"""

from __future__ import annotations


class ClickstreamError(Exception):
    """Root of every error clickstream raises on purpose."""


class ConfigError(ClickstreamError):
    """An invalid setting: the message names the setting and the reason."""


class TransientError(ClickstreamError):
    """A dependency did not answer in time; the same call may work later."""


class TerminalError(ClickstreamError):
    """Retrying will not help; the message says what to do instead."""


class BrokerError(TerminalError):
    """The embedded broker could not be started or stopped."""


class KafkaUnavailableError(TransientError):
    """The Kafka cluster did not answer within the timeout."""


class KafkaAccessError(TerminalError):
    """Kafka refused us: wrong credentials, or a certificate that is not trusted."""


class JobFailedError(TerminalError):
    """A streaming query stopped with an error; its checkpoint lets it resume once fixed."""


class MissingExtraError(TerminalError):
    """An optional integration is used without its pip extra installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module} is not installed: install it with pip install 'clickstream[{extra}]'"
        )
