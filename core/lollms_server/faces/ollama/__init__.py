"""The Ollama-compatible face (/api/chat, /api/generate, model listing and management)."""
