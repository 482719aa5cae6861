"""The load headers a node puts on its API answers and a gateway reads (the lollms-remote
binding, through the SDK): total queue depth, each busy lane's depth, free memory."""

from __future__ import annotations

from urllib.parse import quote, unquote

QUEUE_HEADER = "X-Lollms-Queue-Depth"
MODEL_QUEUE_HEADER = "X-Lollms-Model-Queue-Depth"
FREE_MEMORY_HEADER = "X-Lollms-Free-Memory"
MAX_HEADER_LANES = 64  # the busiest lanes only: a header line stays well under 8 KiB


def model_queue_header(depths: dict[str, int]) -> str:
    """The busy lanes as `instance/model=depth, ...` (names percent-encoded; absent = 0); ""
    when none is busy, and then the header is left out."""
    busy = sorted(((d, lane) for lane, d in depths.items() if d > 0), reverse=True)
    return ", ".join(f"{quote(lane, safe='/')}={d}" for d, lane in busy[:MAX_HEADER_LANES])


def parse_model_queue_header(value: str) -> dict[str, int]:
    """The lanes of a `model_queue_header` value (malformed entries are skipped; "" is none:
    a reader treats a missing header beside X-Lollms-Queue-Depth as "")."""
    depths: dict[str, int] = {}
    for entry in value.split(","):
        lane, _, depth = entry.strip().rpartition("=")
        if lane and depth.isdigit():
            depths[unquote(lane)] = int(depth)
    return depths
