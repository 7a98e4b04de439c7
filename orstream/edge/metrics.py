"""The edge's Prometheus metrics: read from the counters the edge keeps anyway, at scrape time.

``GET /metrics`` (api.py) renders ``edge_registry``: an ``EdgeCollector`` that walks the sessions,
viewers and webhook sender when Prometheus asks, plus the process collector (CPU, memory, open
files). Nothing here runs on the packet path: the send and receive paths only bump plain
integers in their stats objects, as before. Every metric carries HELP text.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .events import WebhookSender
from .hub import Edge


class EdgeCollector(Collector):
    """Sessions, viewers, packets, frames, keyframe requests, recordings, webhooks, drops."""

    def __init__(self, edge: Edge, webhooks: WebhookSender) -> None:
        self.edge = edge
        self.webhooks = webhooks

    def collect(self) -> Iterator[Metric]:
        hubs = list(self.edge.sessions.values())
        viewers = [v for hub in hubs for v in hub.viewers.values()]
        feeds = [f for v in viewers for f in v.feeds()]

        def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, help_text, value=value)

        def counter(name: str, help_text: str, value: float | None = None, *, label: str = "",
                    values: dict[str, float] | None = None) -> CounterMetricFamily:
            if values is None:
                return CounterMetricFamily(name, help_text, value=value)
            family = CounterMetricFamily(name, help_text, labels=[label])
            for key, count in values.items():
                family.add_metric([key], count)
            return family

        yield gauge("orstream_edge_sessions", "Live sessions on this edge.", len(hubs))
        yield gauge("orstream_edge_viewers", "Viewers connected to this edge, all sessions.", len(viewers))
        yield gauge(
            "orstream_edge_publishers",
            "Sessions with a source or a WebRTC publisher feeding them.",
            sum(1 for h in hubs if h.publisher is not None or h.source is not None),
        )
        yield gauge("orstream_edge_recordings", "Recordings running.", sum(1 for h in hubs if h.recorder is not None))
        yield counter("orstream_edge_packets_sent_total", "RTP packets sent to viewers.",
                      sum(f.sender.stats.packets_sent for f in feeds))
        yield counter("orstream_edge_bytes_sent_total", "RTP payload and header bytes sent to viewers.",
                      sum(f.sender.stats.bytes_sent for f in feeds))
        yield counter("orstream_edge_retransmits_total", "Packets resent to viewers after a NACK.",
                      sum(f.sender.stats.retransmits for f in feeds))
        yield counter("orstream_edge_viewer_overflows_total",
                      "Viewer queues flushed because the viewer fell behind (it resumes at a keyframe).",
                      sum(f.stats.overflows for f in feeds))
        yield counter("orstream_edge_frames_in_total", "Encoded frames received from sources and publishers.", label="kind",
                      values={"video": sum(h.counters.video_frames for h in hubs),
                              "audio": sum(h.counters.audio_frames for h in hubs)})
        yield counter("orstream_edge_keyframe_requests_total",
                      "Viewers' keyframe requests, relayed upstream or suppressed by the rate limit.", label="outcome",
                      values={"relayed": sum(h.counters.keyframe_requests_relayed for h in hubs),
                              "suppressed": sum(h.counters.keyframe_requests_suppressed for h in hubs)})
        yield counter("orstream_edge_talkback_frames_total", "Talkback audio frames forwarded.",
                      sum(h.counters.talkback_frames for h in hubs))
        stats = self.webhooks.stats
        yield counter("orstream_edge_webhooks_total", "Webhooks to the control plane, by outcome.", label="outcome",
                      values={"delivered": stats.delivered, "dropped": stats.dropped,
                              "failed_attempt": stats.failed_attempts})
        yield counter("orstream_edge_malformed_dropped_total",
                      "Malformed datagrams and packets dropped from the network, by kind.", label="kind",
                      values={k: n for k, n in sorted(self.edge.drops.counts.items())})


def edge_registry(edge: Edge, webhooks: WebhookSender) -> CollectorRegistry:
    """A registry of its own per edge app (never the global one): the edge's collector and the
    process's CPU, memory and file descriptors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EdgeCollector(edge, webhooks))
    ProcessCollector(namespace="orstream_edge", registry=registry)
    return registry
