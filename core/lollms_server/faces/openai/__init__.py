"""The OpenAI-compatible face (/v1): chat, completions, embeddings, media."""
