"""The HTTP faces: lollms (/api/v1), OpenAI-compatible (/v1), and their shared helpers."""
