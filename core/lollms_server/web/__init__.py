"""Server-rendered pages (Jinja2 + vendored htmx)."""
