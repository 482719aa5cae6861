"""The HTTP faces, each with its schemas.

lollms (/api/v1), OpenAI-compatible (/v1) and Ollama-compatible (/api).
"""
