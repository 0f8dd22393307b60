"""DynamoDB persistence (pynamodb). Nothing outside this package imports pynamodb."""
