"""The per-model queue depth header a node puts on its answers, read back by a gateway."""

from __future__ import annotations

from lollms_server.node_headers import (
    MAX_HEADER_LANES,
    model_queue_header,
    parse_model_queue_header,
)


def test_busy_lanes_round_trip_with_awkward_names() -> None:
    """Names with commas, equals signs and spaces come back as they were; idle lanes are left
    out (absent means 0)."""
    depths = {"llamacpp/a,b=c d": 2, "diffusers/org/sdxl": 1, "echo/echo": 0}
    header = model_queue_header(depths)
    assert header == "llamacpp/a%2Cb%3Dc%20d=2, diffusers/org/sdxl=1"
    assert parse_model_queue_header(header) == {"llamacpp/a,b=c d": 2, "diffusers/org/sdxl": 1}
    assert model_queue_header({"echo/echo": 0}) == ""
    assert parse_model_queue_header("") == {}


def test_only_the_busiest_lanes_travel_and_garbage_is_skipped() -> None:
    """A node with more busy lanes than fit sends the busiest; malformed entries are skipped."""
    depths = {f"b/m{i}": i for i in range(1, MAX_HEADER_LANES + 11)}
    sent = parse_model_queue_header(model_queue_header(depths))
    assert len(sent) == MAX_HEADER_LANES and min(sent.values()) == 11
    assert parse_model_queue_header("x/y=-1, =3, z, a/b=4") == {"a/b": 4}
