"""Per-invocation usage as CloudWatch Embedded Metric Format (powertools ``Metrics``), or as a log line.

``CLINICBOT_USAGE_METRICS=on`` prints EMF documents to stdout: CloudWatch extracts the metrics from the
log, so there is no API call and no extra DynamoDB write per update. Namespace: ``POWERTOOLS_METRICS_NAMESPACE``;
dimensions: ``service`` (``POWERTOOLS_SERVICE_NAME``, added by powertools) and ``clinic``
(``CLINICBOT_CLINIC_ID``); ``MessagesSent`` also ``kind``.

Each (metric name, dimension values) pair is one CloudWatch custom metric, billed ~$0.30 a month, prorated
by the hours in which it receives data. With every counter non-zero this is at most
:data:`METRICS_PER_CLINIC` = 10 metrics per clinic: UpdatesHandled, Handoffs, MisCalls, CrmCalls and
MessagesSent x 6 kinds. For a 20,000-message clinic that is more than the rest of its bill put together
(``bench/cost_month.py`` measures it), so the default is ``off``: the same counts then go out as one JSON log
line per invocation (``"usage"``; CloudWatch Logs Insights can sum them: it is the exact record, the rollup
item is the batched one) and no custom metric is created. Zero counters are never emitted: a metric that
gets no data in an hour costs nothing for that hour.

``EphemeralMetrics``: the functions' own ``Metrics()`` instances share one metric set; ours must not add the
``clinic`` dimension to theirs, nor flush theirs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from clinicbot.metering.usage import MessageKind, Name, Usage

__all__ = ["METRICS_PER_CLINIC", "METRIC_NAMES", "EmfPublisher"]

log = logging.getLogger(__name__)

METRIC_NAMES: dict[str, str] = {
    Name.UPDATES.value: "UpdatesHandled",
    Name.HANDOFFS.value: "Handoffs",
    Name.MIS_CALLS.value: "MisCalls",
    Name.CRM_CALLS.value: "CrmCalls",
}
MESSAGES_METRIC = "MessagesSent"
METRICS_PER_CLINIC = len(METRIC_NAMES) + len(MessageKind)


@dataclass
class EmfPublisher:
    clinic: str
    function: str
    enabled: bool = False
    namespace: str | None = None
    service: str | None = None

    def __post_init__(self) -> None:
        self.namespace = self.namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "ClinicBot"
        self.service = self.service or os.environ.get("POWERTOOLS_SERVICE_NAME") or "clinicbot"
        self._metrics: Any = None

    def _emf(self) -> Any:
        if self._metrics is None:
            from aws_lambda_powertools.metrics import EphemeralMetrics

            self._metrics = EphemeralMetrics(namespace=self.namespace, service=self.service)
            self._metrics.set_default_dimensions(clinic=self.clinic)
        return self._metrics

    def publish(self, usage: Usage) -> int:
        """Emit this invocation's counters; returns the number of EMF documents (0 when off)."""
        if not self.enabled:
            counts = usage.as_dict()
            if counts:
                log.info("usage", extra={"usage": counts, "clinic": self.clinic, "function": self.function})
            return 0
        from aws_lambda_powertools.metrics import MetricUnit

        metrics = self._emf()
        documents = 0
        plain = {metric: usage[counter] for counter, metric in METRIC_NAMES.items() if usage[counter]}
        if plain:
            for metric, value in plain.items():
                metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)
            metrics.add_metadata(key="function", value=self.function)
            metrics.flush_metrics()
            documents += 1
        for kind, value in usage.messages().items():
            metrics.add_dimension(name="kind", value=kind.value)
            metrics.add_metric(name=MESSAGES_METRIC, unit=MetricUnit.Count, value=value)
            metrics.add_metadata(key="function", value=self.function)
            metrics.flush_metrics()
            documents += 1
        return documents
