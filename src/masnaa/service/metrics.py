"""Prometheus metrics of one factory process, on a registry of its own.

One ``Metrics`` object per process: ``masnaa up`` builds it and hands the same
object to the API app (which serves ``/metrics``) and to the control loop
(which observes pass latency and counts the transitions it applies). Tests
build as many as they like: nothing registers on prometheus-client's global
registry.

- ``masnaa_pass_seconds`` (histogram): wall time of one control-loop pass.
- ``masnaa_job_transitions_total{from_state,to_state}`` (counter): state
  changes applied by this process (API: submit, cancel; loop: the rest).
- ``masnaa_queue_depth{tenant,gpu_type}`` and ``masnaa_gpus{state}``
  (gauges): read from the database at scrape time by the API
  (``masnaa.api.metrics``), so they are right whichever process changed them.
- ``masnaa_gpu_hours_charged_total{tenant_kind,site}`` and
  ``masnaa_gpu_hours_credited_total{tenant_kind,site}`` (counters): GPU-hours
  metered by the control loop, and preempted GPU-hours given back
  (``service.metering``); net charged = charged − credited.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

PASS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.pass_seconds = Histogram(
            "masnaa_pass_seconds",
            "Wall time of one control-loop pass (decide + apply).",
            buckets=PASS_BUCKETS,
            registry=self.registry,
        )
        self.transitions = Counter(
            "masnaa_job_transitions",
            "Job state transitions applied by this process.",
            ["from_state", "to_state"],
            registry=self.registry,
        )
        self.submissions = Counter(
            "masnaa_submissions",
            "Jobs accepted by the API of this process.",
            registry=self.registry,
        )

        self.gpu_hours_charged = Counter(
            "masnaa_gpu_hours_charged",
            "GPU-hours metered into usage records (charged in full while a run lasts).",
            ["tenant_kind", "site"],
            registry=self.registry,
        )
        self.gpu_hours_credited = Counter(
            "masnaa_gpu_hours_credited",
            "Preempted GPU-hours given back when a preempted run is settled.",
            ["tenant_kind", "site"],
            registry=self.registry,
        )

    def transition(self, from_state: str | None, to_state: str, count: int = 1) -> None:
        self.transitions.labels(from_state or "none", to_state).inc(count)
