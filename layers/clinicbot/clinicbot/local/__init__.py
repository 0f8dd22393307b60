"""Local stand-ins: AWS (moto server), Telegram (fake Bot API), the Lambda runtime, a terminal chat."""
