"""A minimal Telegram Bot API client on aiohttp for the scheduled functions.

It exists so that the reminders and broadcast functions do not import aiogram (whose import costs
seconds of cold start). The webhook function keeps using aiogram.
"""

from clinicbot.telegram_api.client import (
    DEFAULT_BASE_URL,
    BadRequest,
    BotApiClient,
    BotApiError,
    Forbidden,
    NetworkError,
    RetryAfter,
    ServerError,
    Unauthorized,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "BadRequest",
    "BotApiClient",
    "BotApiError",
    "Forbidden",
    "NetworkError",
    "RetryAfter",
    "ServerError",
    "Unauthorized",
]
