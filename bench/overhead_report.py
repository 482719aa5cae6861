"""What bench/overhead.py measures, and its Markdown tables (per proxy, CPU ratio, targets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from common import machine, pct

DIRECT, BARE, LOLLMS, LITELLM = "direct", "bare aiohttp", "lollms-server", "LiteLLM"
#: The issue's reference for one LiteLLM worker here (ms of CPU per request), used as the
#: denominator when LiteLLM is not run (`--no-litellm`).
LITELLM_REFERENCE_MS = {False: 13.0, True: 37.0}
CPU_RATIO_GOAL = 0.10
#: Issue 15: lollms-server's added p50, added TTFT and CPU per chat at most this many times the
#: bare aiohttp hop's, and at most STREAM_CPU_GOAL_MS of CPU per 20-chunk stream.
BARE_RATIO_GOAL = 2.0
STREAM_CPU_GOAL_MS = 1.5


@dataclass(frozen=True)
class Scenario:
    """One load shape: concurrency, requests per side, streaming, key auth."""

    concurrency: int
    requests: int
    stream: bool
    key: bool = False

    @property
    def name(self) -> str:
        """Short label for the table."""
        kind = "stream" if self.stream else "non-stream"
        auth = ", user key" if self.key else ""
        return f"c={self.concurrency} {kind}{auth}"


@dataclass
class Side:
    """Measurements of one target of a scenario, summed over rounds."""

    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    upstream_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Requests sent (answered or failed)."""
        return len(self.latencies) + len(self.errors)

    @property
    def throughput(self) -> float:
        """Requests per second over the rounds' wall time."""
        return len(self.latencies) / self.wall if self.wall else 0.0

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds of the target's process tree per request."""
        return self.cpu / max(1, self.count) * 1000


@dataclass
class Report:
    """Everything measured in one invocation."""

    rows: list[tuple[Scenario, dict[str, Side]]] = field(default_factory=list)
    startup_s: dict[str, float] = field(default_factory=dict)
    rss_idle_mb: dict[str, float] = field(default_factory=dict)
    rss_after_mb: dict[str, float] = field(default_factory=dict)
    idle_cpu_pct: dict[str, float] = field(default_factory=dict)
    litellm_version: str = ""
    wall_s: float = 0.0
    machine: str = field(default_factory=machine)


def added(proxy: list[float], direct: list[float], q: int) -> float:
    """Percentile q of `proxy` minus that of `direct`, in ms."""
    return pct(proxy, q) - pct(direct, q)


def scenario_lines(report: Report) -> list[str]:
    """One row per scenario and proxy."""
    lines = [
        "| scenario | proxy | requests | p50 direct ms | p50 proxied ms | added p50 ms "
        "| p95 direct ms | p95 proxied ms | added p95 ms | throughput ratio "
        "| added TTFT p50 ms | proxy CPU ms/req | mock CPU ms/req | own overhead header p50 ms "
        "| errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, sides in report.rows:
        direct = sides[DIRECT]
        for name, side in sides.items():
            if name == DIRECT:
                continue
            ttft = added(side.ttfts, direct.ttfts, 50) if scenario.stream else None
            p50 = added(side.latencies, direct.latencies, 50)
            ratio = side.throughput / direct.throughput if direct.throughput else float("nan")
            header = pct(side.overheads, 50)
            lines.append(
                f"| {scenario.name} | {name} | {side.count} | {pct(direct.latencies, 50):.2f} "
                f"| {pct(side.latencies, 50):.2f} | {p50:+.2f} "
                f"| {pct(direct.latencies, 95):.2f} | {pct(side.latencies, 95):.2f} "
                f"| {added(side.latencies, direct.latencies, 95):+.2f} | {ratio:.2f} "
                f"| {'' if ttft is None else f'{ttft:+.2f}'} | {side.cpu_ms:.2f} "
                f"| {direct.upstream_cpu / max(1, direct.count) * 1000:.2f} "
                f"| {'' if header != header else f'{header:.2f}'} "
                f"| {len(side.errors)} (direct {len(direct.errors)}) |"
            )
    return lines


def ratio_lines(report: Report) -> list[str]:
    """lollms-server CPU per request over LiteLLM's, per scenario run with both."""
    lines = [
        "| scenario | lollms-server CPU ms/req | LiteLLM CPU ms/req | lollms ÷ LiteLLM "
        "| LiteLLM ÷ lollms | goal ≤ 0.10 |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, sides in report.rows:
        if LITELLM not in sides:
            continue
        ours, theirs = sides[LOLLMS].cpu_ms, sides[LITELLM].cpu_ms
        met = "yes" if ours <= CPU_RATIO_GOAL * theirs else "**no**"
        lines.append(
            f"| {scenario.name} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.3f} "
            f"| {theirs / ours:.1f} | {met} |"
        )
    return lines


def process_lines(report: Report) -> list[str]:
    """Start-up, RSS and idle CPU of each process."""
    lines = [
        "| process | start-up to first health answer s | RSS idle MiB | idle CPU % of a core "
        "| RSS after the load MiB |",
        "|---|---|---|---|---|",
    ]
    labels = {
        DIRECT: "mock upstream",
        BARE: "bare aiohttp proxy",
        LITELLM: f"LiteLLM {report.litellm_version}",
    }
    for name, startup in report.startup_s.items():
        lines.append(
            f"| {labels.get(name, name)} | {startup:.3f} | {report.rss_idle_mb[name]:.1f} "
            f"| {report.idle_cpu_pct[name]:.1f} | {report.rss_after_mb[name]:.1f} |"
        )
    return lines


def target_lines(report: Report) -> list[str]:
    """The issue's targets, each marked met or not met."""
    rows = {s.name: sides for s, sides in report.rows}
    checks: list[tuple[str, float, float, str]] = []
    peers = {
        (s.concurrency, s.stream): sides[LITELLM] for s, sides in report.rows if LITELLM in sides
    }  # the user-key rows compare with LiteLLM's row of the same shape (master key)
    for scenario, sides in report.rows:
        ours = sides[LOLLMS].cpu_ms
        peer = peers.get((scenario.concurrency, scenario.stream))
        if peer is not None:
            limit, source = CPU_RATIO_GOAL * peer.cpu_ms, "LiteLLM's in this run"
        else:
            limit = CPU_RATIO_GOAL * LITELLM_REFERENCE_MS[scenario.stream]
            source = "the issue's LiteLLM reference"
        checks.append((f"CPU/request {scenario.name} (1/10 of {source})", ours, limit, "ms"))
    if "c=1 non-stream" in rows:
        sides = rows["c=1 non-stream"]
        value = added(sides[LOLLMS].latencies, sides[DIRECT].latencies, 50)
        checks.append(("added p50 at c=1 (non-stream)", value, 1.0, "ms"))
    if "c=1 stream" in rows:
        sides = rows["c=1 stream"]
        value = added(sides[LOLLMS].ttfts, sides[DIRECT].ttfts, 50)
        checks.append(("TTFT overhead p50 at c=1", value, 1.0, "ms"))
    checks.append(("start-up", report.startup_s[LOLLMS], 1.0, "s"))
    checks.append(("idle RSS", report.rss_idle_mb[LOLLMS], 80.0, "MiB"))
    lines = ["| target | measured | goal | met |", "|---|---|---|---|"]
    for name, value, limit, unit in checks:
        met = "yes" if value <= limit else "**no**"
        lines.append(f"| {name} | {value:.2f} {unit} | ≤ {limit:.2f} {unit} | {met} |")
    return lines


def bare_lines(report: Report) -> list[str]:
    """lollms-server's added p50, added TTFT and CPU per request over the bare hop's."""
    lines = [
        "| scenario | added p50 ms lollms / bare | ratio | added TTFT p50 ms lollms / bare "
        "| ratio | CPU ms/req lollms / bare | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario, sides in report.rows:
        if BARE not in sides:
            continue
        direct, bare, ours = sides[DIRECT], sides[BARE], sides[LOLLMS]
        p50 = (
            added(ours.latencies, direct.latencies, 50),
            added(bare.latencies, direct.latencies, 50),
        )
        ttft = ""
        if scenario.stream:
            t = added(ours.ttfts, direct.ttfts, 50), added(bare.ttfts, direct.ttfts, 50)
            ttft = f"{t[0]:+.2f} / {t[1]:+.2f} | {t[0] / t[1]:.2f}"
        lines.append(
            f"| {scenario.name} | {p50[0]:+.2f} / {p50[1]:+.2f} | {p50[0] / p50[1]:.2f} "
            f"| {ttft or ' | '} | {ours.cpu_ms:.2f} / {bare.cpu_ms:.2f} "
            f"| {ours.cpu_ms / bare.cpu_ms:.2f} |"
        )
    return lines


def bare_target_lines(report: Report) -> list[str]:
    """Issue 15's targets at c=1, against the bare hop of the same run."""
    rows = {s.name: sides for s, sides in report.rows}
    checks: list[tuple[str, float, float]] = []
    goal = BARE_RATIO_GOAL
    chat, stream = rows.get("c=1 non-stream"), rows.get("c=1 stream")
    if chat is not None and BARE in chat:
        hop = added(chat[BARE].latencies, chat[DIRECT].latencies, 50)
        ours = added(chat[LOLLMS].latencies, chat[DIRECT].latencies, 50)
        checks.append(("added p50, chat (≤ 2 x the bare hop's added p50)", ours, goal * hop))
        if stream is not None:
            ttft = added(stream[LOLLMS].ttfts, stream[DIRECT].ttfts, 50)
            checks.append(
                ("added TTFT p50, stream (≤ 2 x the bare hop's added p50)", ttft, goal * hop)
            )
        cpu = chat[BARE].cpu_ms
        checks.append(("CPU per chat (≤ 2 x the bare hop's)", chat[LOLLMS].cpu_ms, goal * cpu))
    if stream is not None:
        checks.append(
            ("CPU per 20-chunk stream (≤ 1.5 ms)", stream[LOLLMS].cpu_ms, STREAM_CPU_GOAL_MS)
        )
    lines = ["| target (issue 15, c=1) | measured ms | limit ms | met |", "|---|---|---|---|"]
    for name, value, limit in checks:
        lines.append(
            f"| {name} | {value:.2f} | {limit:.2f} | {'yes' if value <= limit else '**no**'} |"
        )
    return lines


def bare_ratios(report: Report) -> dict[str, float]:
    """Issue 15's figures of one run: lollms-server's over the bare hop's (c=1)."""
    rows = {s.name: sides for s, sides in report.rows}
    chat, stream = rows["c=1 non-stream"], rows["c=1 stream"]
    hop = added(chat[BARE].latencies, chat[DIRECT].latencies, 50)
    return {
        "bare added p50 ms": hop,
        "added p50 ratio": added(chat[LOLLMS].latencies, chat[DIRECT].latencies, 50) / hop,
        "added TTFT ratio": added(stream[LOLLMS].ttfts, stream[DIRECT].ttfts, 50) / hop,
        "bare CPU ms/chat": chat[BARE].cpu_ms,
        "CPU ratio, chat": chat[LOLLMS].cpu_ms / chat[BARE].cpu_ms,
        "CPU ms/stream": stream[LOLLMS].cpu_ms,
        "bare CPU ms/stream": stream[BARE].cpu_ms,
    }


def repeat_lines(reports: list[Report]) -> list[str]:
    """One row per run of issue 15's ratios (goals: ratios ≤ 2, stream CPU ≤ 1.5 ms)."""
    figures = [bare_ratios(report) for report in reports]
    names = list(figures[0])
    lines = [
        f"{len(reports)} runs, each with fresh processes; {reports[0].machine}.",
        "",
        "| run | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for index, row in enumerate(figures, 1):
        lines.append(f"| {index} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |")
    middle = [sorted(row[n] for row in figures)[len(figures) // 2] for n in names]
    lines.append("| median | " + " | ".join(f"{value:.2f}" for value in middle) + " |")
    return lines


def table(report: Report) -> str:
    """All tables of one invocation, headed by the date and machine."""
    lines = [f"Run: {report.machine}; benchmark wall time {report.wall_s:.0f} s.", ""]
    lines += scenario_lines(report)
    if any(LITELLM in sides for _, sides in report.rows):
        lines += ["", *ratio_lines(report)]
    else:
        lines += ["", "LiteLLM not run (`--no-litellm`): CPU goals use the issue's reference."]
    if any(BARE in sides for _, sides in report.rows):
        lines += ["", "Against the bare aiohttp hop (same run):", "", *bare_lines(report)]
        lines += ["", *bare_target_lines(report)]
    lines += ["", *process_lines(report), "", *target_lines(report)]
    return "\n".join(lines)
