"""The metrics path: measurements kept in a Prometheus registry and written in its text
exposition format, for the networks allowed to read them.

The counting, the histogram's buckets and the text format (escaping, content negotiation
with a scraper that asks for OpenMetrics) are ``prometheus_client``'s: it is an optional
extra (``metrics``), imported only when ``metrics_path``
is set, so a shop that does not scrape installs nothing more. Each middleware keeps its own
registry (never the library's global one): two middlewares in one process, or a test and
the next, never mix their counts.

The values are per process. A server with several worker processes (gunicorn ``-w 4``)
answers each scrape from whichever worker took it; scrape each worker, or use the
``metrics_hook`` to send the measurements to a collector that adds them up (statsd).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import OptionError, install_hint
from .metrics import COUNTER, GAUGE, LATENCY_BUCKETS, METRICS, PREFIX, Measurement, Metrics

__all__ = ["PrometheusExposition", "allowed"]

class PrometheusExposition:
    """The Prometheus sink of a :class:`~.metrics.Metrics` and the text it is scraped as.

    :param metrics: whose measurements it keeps (it adds itself as a sink) and whose gauges
        it samples at each scrape.
    :raises OptionError: ``prometheus_client`` is not installed (naming ``metrics_path``).
    """

    def __init__(self, metrics: Metrics) -> None:
        try:
            import prometheus_client
            from prometheus_client.core import GaugeMetricFamily
            from prometheus_client.exposition import choose_encoder
        except ImportError:
            raise OptionError("metrics_path", "serving metrics needs prometheus_client: "
                              f"{install_hint('metrics', 'prometheus-client')}; or use "
                              "metrics_hook alone") from None
        self._choose_encoder = choose_encoder
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self._metrics = metrics
        self._series: dict[str, Any] = {}
        # The labelled series by name and label values: the library's own look-up checks
        # and sorts the labels on every call, five times the cost of this one.
        self._children: dict[tuple[Any, ...], Any] = {}
        for name, row in METRICS.items():
            if row.kind == COUNTER:
                self._series[name] = prometheus_client.Counter(
                    PREFIX + name, row.help, row.labels, registry=self.registry)
            elif row.kind != GAUGE:
                self._series[name] = prometheus_client.Histogram(
                    PREFIX + name, row.help, row.labels, registry=self.registry,
                    buckets=LATENCY_BUCKETS)
        self.registry.register(_SampledGauges(metrics, GaugeMetricFamily))
        metrics.sinks.append(self.record)

    def record(self, measurement: Measurement) -> None:
        """Keep one counter increment or histogram observation (gauges are sampled)."""
        key = (measurement.name, *measurement.labels.items())
        child = self._children.get(key)
        if child is None:
            series = self._series.get(measurement.name)
            if series is None:
                return  # a gauge: read at scrape time
            row = METRICS[measurement.name]
            child = series.labels(*(measurement.labels[label] for label in row.labels)) \
                if row.labels else series
            self._children[key] = child
        if measurement.kind == COUNTER:
            child.inc(measurement.value)
        else:
            child.observe(measurement.value)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape with this ``Accept`` header: ``(body, content type)``."""
        encoder, content_type = self._choose_encoder(accept or "")
        return encoder(_WithoutCreated(self.registry)), content_type


class _WithoutCreated:
    """The registry without the ``..._created`` timestamps the library adds to each counter
    and histogram: ``stripe_checkout_checkouts_created`` would read as a count of checkouts
    created, and the library's switch for them is global, the host app's metrics included."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        for metric in self._registry.collect():
            metric.samples = [sample for sample in metric.samples
                              if not sample.name.endswith("_created")]
            yield metric


class _SampledGauges:
    """A collector that reads the gauges (jobs due, breaker state) at each scrape."""

    def __init__(self, metrics: Metrics, family: Any) -> None:
        self._metrics = metrics
        self._family = family

    def describe(self) -> Iterable[Any]:
        return ()  # sampled: what there is depends on the ledger at scrape time

    def collect(self) -> Iterator[Any]:
        families: dict[str, Any] = {}
        for gauge in self._metrics.sample():
            row = METRICS[gauge.name]
            family = families.get(gauge.name)
            if family is None:
                family = families[gauge.name] = self._family(
                    PREFIX + gauge.name, row.help, labels=row.labels)
            family.add_metric([gauge.labels[label] for label in row.labels], gauge.value)
        yield from families.values()


def allowed(remote_addr: str | None, allow: Sequence[Any]) -> bool:
    """Whether a request from ``remote_addr`` (``REMOTE_ADDR``) may read the metrics."""
    if not remote_addr:
        return False
    try:
        address = ipaddress.ip_address(remote_addr.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.1.2.3 from a dual-stack socket
    return any((mapped or address) in network or address in network for network in allow)
