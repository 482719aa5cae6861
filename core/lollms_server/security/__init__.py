"""Access control: API keys, safe local access, roles, rate limits, the audit log."""
