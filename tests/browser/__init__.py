"""Browser tests (playwright + the system chromium)."""
