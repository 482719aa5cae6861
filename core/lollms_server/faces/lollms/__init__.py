"""The lollms face: /api/v1, the admin API, node status, the lollms-client and webui routes."""
