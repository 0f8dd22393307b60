"""ClinicBot: a Telegram assistant for private medical clinics, serverless on AWS."""

__version__ = "0.1.0"
