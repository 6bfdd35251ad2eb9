"""Outgoing mail (password reset, security notifications) through a configurable SMTP server."""

from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage

from livedata_cli.server.config import ServerConfig


class Mailer:
    """Sends one message per call; with no SMTP host configured, mail is refused, not dropped silently."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config

    @property
    def configured(self) -> bool:
        return bool(self.config.smtp_host)

    def send(self, to: str, subject: str, body: str) -> None:
        c = self.config
        if not c.smtp_host:
            raise RuntimeError("no SMTP server configured (--smtp-host)")
        msg = EmailMessage()
        msg["From"] = c.smtp_from
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        with smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=30) as smtp:
            if c.smtp_starttls:
                smtp.starttls()
            if c.smtp_user:
                smtp.login(c.smtp_user, os.environ.get("LIVEDATA_SMTP_PASSWORD", ""))
            smtp.send_message(msg)
