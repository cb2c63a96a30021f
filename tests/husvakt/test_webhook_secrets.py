"""A webhook's secret: an empty one stops the service at start; a missing one is warned about."""

import logging

import pytest

from casebridge.errors import WebhookSecretError
from gateway.clock import SystemClock
from husvakt.assemble import channels_for
from husvakt.config import HusvaktConfig


def config(webhook):
    return HusvaktConfig.model_validate(
        {
            "sites": [{"id": "s", "name": "S"}],
            "teams": [{"id": "fm", "name": "FM", "webhook": webhook}],
            "routing": [{"id": "all", "team": "fm"}],
        }
    )


def test_an_empty_secret_file_refuses_to_start(tmp_path):
    empty = tmp_path / "hook.secret"
    empty.write_text("\n")
    with pytest.raises(WebhookSecretError, match="is empty"):
        channels_for(
            config({"url": "https://hooks.example/x", "secret_file": str(empty)}), SystemClock()
        )


def test_a_webhook_without_a_secret_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        channels_for(config({"url": "https://hooks.example/x"}), SystemClock())
    assert "has no secret_file" in caplog.text
