"""Patient engagement: feedback and NPS, referral links, the FAQ, marketing broadcasts.

Domain modules here import neither aiogram nor boto3; the ``*_store`` modules are the DynamoDB adapters
(pynamodb) and ``clinicbot.telegram.routers.{account,info,feedback,privacy}`` the Telegram side.
"""
