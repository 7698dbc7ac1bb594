#![allow(clippy::unwrap_used)]
//! Metrics and spans, asserted through the OpenTelemetry SDK's in-memory exporters.

mod common;

use common::*;
use leasing_abstractions::fault::Fault;
use leasing_abstractions::telemetry::TelemetryOptions;
use leasing_abstractions::Operation;
use leasing_abstractions::*;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::time::advance;
use tracing_subscriber::layer::SubscriberExt;

struct Telemetry {
    metrics: InMemoryMetricExporter,
    meter_provider: SdkMeterProvider,
    spans: InMemorySpanExporter,
    _guard: tracing::subscriber::DefaultGuard,
}

fn telemetry() -> Telemetry {
    let metrics = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let spans = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    Telemetry {
        metrics,
        meter_provider,
        spans,
        _guard,
    }
}

/// One observed point: (value, attributes).
type Points = Vec<(f64, BTreeMap<String, String>)>;

/// The kind of an exported instrument, as a Prometheus exporter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A monotonic sum: gets `_total`.
    Counter,
    /// A non-monotonic sum or a gauge: a Prometheus gauge.
    Gauge,
    Histogram,
}

/// One histogram point: (count, sum, max, attributes).
type HistogramPoints = Vec<(u64, f64, f64, BTreeMap<String, String>)>;

impl Telemetry {
    /// name -> (unit, points, kind); histograms report their count, gauges their value.
    fn collect(&self) -> BTreeMap<String, (String, Points, Kind)> {
        self.meter_provider.force_flush().unwrap();
        let mut out = BTreeMap::new();
        let finished = self.metrics.get_finished_metrics().unwrap();
        let last = finished.last().expect("an export happened");
        for sm in last.scope_metrics() {
            assert_eq!(sm.scope().name(), "distributed_leasing");
            for m in sm.metrics() {
                let attrs = |it: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
                    it.map(|kv| (kv.key.to_string(), kv.value.to_string()))
                        .collect::<BTreeMap<_, _>>()
                };
                let mut points: Points = Vec::new();
                let sum_kind = |monotonic: bool| {
                    if monotonic {
                        Kind::Counter
                    } else {
                        Kind::Gauge
                    }
                };
                let kind = match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        for p in s.data_points() {
                            points.push((p.value() as f64, attrs(&mut p.attributes())));
                        }
                        sum_kind(s.is_monotonic())
                    }
                    AggregatedMetrics::I64(MetricData::Sum(s)) => {
                        for p in s.data_points() {
                            points.push((p.value() as f64, attrs(&mut p.attributes())));
                        }
                        sum_kind(s.is_monotonic())
                    }
                    AggregatedMetrics::I64(MetricData::Gauge(g)) => {
                        for p in g.data_points() {
                            points.push((p.value() as f64, attrs(&mut p.attributes())));
                        }
                        Kind::Gauge
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            points.push((p.count() as f64, attrs(&mut p.attributes())));
                        }
                        Kind::Histogram
                    }
                    other => panic!("unexpected data for {}: {other:?}", m.name()),
                };
                out.insert(m.name().to_owned(), (m.unit().to_owned(), points, kind));
            }
        }
        out
    }

    /// The points of histogram `name` with their count, sum and max (empty if it has none).
    fn histogram(&self, name: &str) -> HistogramPoints {
        self.meter_provider.force_flush().unwrap();
        let finished = self.metrics.get_finished_metrics().unwrap();
        let last = finished.last().expect("an export happened");
        let mut out = Vec::new();
        for m in last.scope_metrics().flat_map(|sm| sm.metrics()) {
            if m.name() != name {
                continue;
            }
            let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else {
                panic!("{name} is not an f64 histogram");
            };
            for p in h.data_points() {
                let attrs = p
                    .attributes()
                    .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                    .collect();
                out.push((p.count(), p.sum(), p.max().unwrap_or(f64::NAN), attrs));
            }
        }
        out
    }
}

fn total(points: &Points, result: Option<&str>) -> f64 {
    points
        .iter()
        .filter(|(_, a)| result.is_none_or(|r| a.get("result").map(String::as_str) == Some(r)))
        .map(|(v, _)| v)
        .sum()
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[tokio::test(start_paused = true)]
async fn every_instrument_is_recorded_with_its_name_unit_and_attributes() {
    let t = telemetry();
    let store = InMemoryLeaseProvider::new();
    let faulty = fault::FaultInjectingProvider::new(Arc::new(store.clone()));
    let faults = faulty.control();
    let manager = LeaseManager::builder(Arc::new(faulty))
        .options(
            LeaseOptions::default()
                .with_default_lease_duration(secs(30.0))
                .with_acquire_timeout(secs(1.0)),
        )
        .meter(t.meter_provider.meter("distributed_leasing"))
        .build()
        .unwrap();
    let a = manager.acquire("a").await.unwrap();
    let b = manager.acquire("b").await.unwrap();
    assert_eq!(
        manager.acquire("a").await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
    assert!(manager.try_acquire("a").await.unwrap().is_none());
    // A backend failure (not contention).
    faults.script(Operation::Acquire, [Fault::Unavailable]);
    assert_eq!(
        manager.try_acquire("c").await.unwrap_err().kind(),
        ErrorKind::ProviderUnavailable
    );
    assert_eq!(manager.probe(secs(1.0)).await.status, HealthStatus::Healthy);
    // One renewal round fails for both leases (at risk), the next succeeds.
    faults.script(Operation::Renew, [Fault::Unavailable, Fault::Unavailable]);
    advance(secs(20.0)).await;
    settle().await;
    advance(secs(1.0)).await;
    settle().await;
    // b is lost through an operator break at its next renewal; a is released.
    store.break_lease("b").await.unwrap();
    advance(secs(20.0)).await;
    settle().await;
    assert_eq!(b.state(), LeaseState::Lost);
    assert_eq!(
        manager.check_held_leases().status,
        HealthStatus::Unhealthy,
        "b is lost and its handle alive"
    );
    a.release().await.unwrap();

    let m = t.collect();
    let expect_units = [
        ("leasing.acquisitions.total", "{acquisition}"),
        ("leasing.acquisitions.succeeded", "{acquisition}"),
        ("leasing.acquisitions.contended", "{acquisition}"),
        ("leasing.acquisitions.failed", "{acquisition}"),
        ("leasing.acquisition.duration", "ms"),
        ("leasing.acquisition.attempt.duration", "ms"),
        ("leasing.renewals.total", "{renewal}"),
        ("leasing.renewals.succeeded", "{renewal}"),
        ("leasing.renewals.failed", "{renewal}"),
        ("leasing.renewal.duration", "ms"),
        ("leasing.leases_lost.total", "{lease}"),
        ("leasing.releases.total", "{lease}"),
        ("leasing.lease.duration", "s"),
        ("leasing.active_leases.current", "{lease}"),
        ("leasing.at_risk_leases.current", "{lease}"),
        ("leasing.health.status", "{status}"),
    ];
    for (name, unit) in expect_units {
        let (u, _, _) = m
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing; have {:?}", m.keys()));
        assert_eq!(u, unit, "{name}");
    }
    let p = |n: &str| &m[n].1;
    assert_eq!(total(p("leasing.acquisitions.total"), None), 5.0);
    assert_eq!(total(p("leasing.acquisitions.succeeded"), None), 2.0);
    // The acquire that waited in vain for "a" and the try_acquire that found it held.
    assert_eq!(
        total(p("leasing.acquisitions.contended"), Some("held")),
        2.0
    );
    assert_eq!(total(p("leasing.acquisitions.total"), Some("held")), 2.0);
    assert_eq!(
        total(p("leasing.acquisitions.failed"), None),
        1.0,
        "contention is not a failure"
    );
    assert_eq!(
        total(
            p("leasing.acquisitions.failed"),
            Some("provider_unavailable")
        ),
        1.0
    );
    assert_eq!(total(p("leasing.acquisition.duration"), None), 5.0);
    // Attempts: a and b got theirs, c met the failure, and at least three found "a" held
    // (the try_acquire, and the acquire's first attempt and its look after subscribing).
    let attempts = p("leasing.acquisition.attempt.duration");
    assert_eq!(total(attempts, Some("success")), 2.0);
    assert_eq!(total(attempts, Some("provider_unavailable")), 1.0);
    assert!(total(attempts, Some("held")) >= 3.0, "{attempts:?}");
    assert_eq!(
        total(p("leasing.at_risk_leases.current"), None),
        0.0,
        "both leases went at risk and back"
    );
    let health = |check: &str| {
        p("leasing.health.status")
            .iter()
            .find(|(_, a)| a.get("check").map(String::as_str) == Some(check))
            .map(|(v, _)| *v)
    };
    assert_eq!(health("provider"), Some(0.0), "healthy");
    assert_eq!(health("leases"), Some(2.0), "unhealthy");
    // Round 1: 2 failures; retry: 2 successes; round 2: a succeeds, b is lost.
    assert_eq!(total(p("leasing.renewals.total"), None), 6.0);
    assert_eq!(total(p("leasing.renewals.succeeded"), None), 3.0);
    assert_eq!(
        total(p("leasing.renewals.failed"), Some("provider_unavailable")),
        2.0
    );
    assert_eq!(total(p("leasing.renewals.failed"), Some("lost")), 1.0);
    assert_eq!(total(p("leasing.renewal.duration"), None), 6.0);
    assert_eq!(total(p("leasing.leases_lost.total"), None), 1.0);
    assert_eq!(total(p("leasing.releases.total"), None), 1.0);
    assert_eq!(total(p("leasing.lease.duration"), None), 2.0);
    assert_eq!(
        total(p("leasing.active_leases.current"), None),
        0.0,
        "both ended"
    );
    // The Prometheus names documented for the dashboard and alert rules are exactly the
    // instruments recorded here, converted the way an OpenTelemetry exporter does.
    let documented = include_str!("../../../docs/observability/README.md");
    let mut expected: Vec<String> = m
        .iter()
        .map(|(name, (unit, _, kind))| {
            let base = name.replace('.', "_");
            let with_unit = match unit.as_str() {
                "ms" => format!("{base}_milliseconds"),
                "s" => format!("{base}_seconds"),
                _ => base,
            };
            if *kind == Kind::Counter && !with_unit.ends_with("_total") {
                format!("{with_unit}_total")
            } else {
                with_unit
            }
        })
        .collect();
    expected.sort();
    let mut listed: Vec<String> = documented
        .lines()
        .filter(|l| l.starts_with("| `leasing."))
        .filter_map(|l| {
            l.split('`')
                .nth(3)
                .map(|s| s.trim_end_matches("_{bucket,sum,count}").to_owned())
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed, expected,
        "docs/observability/README.md is out of date"
    );
    for (name, (_, points, _)) in &m {
        for (_, a) in points {
            assert_eq!(
                a.get("provider").map(String::as_str),
                Some("in-memory"),
                "{name}"
            );
            assert!(
                !a.contains_key("lease.name"),
                "{name}: lease names are off by default"
            );
        }
    }
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn lease_names_are_attributes_only_when_opted_in() {
    let t = telemetry();
    let manager = LeaseManager::builder(Arc::new(InMemoryLeaseProvider::new()))
        .meter(t.meter_provider.meter("distributed_leasing"))
        .telemetry(TelemetryOptions::default().with_lease_name(true))
        .build()
        .unwrap();
    let lease = manager.acquire("named").await.unwrap();
    let m = t.collect();
    let (_, points, _) = &m["leasing.active_leases.current"];
    assert_eq!(points[0].0, 1.0, "one lease held");
    assert_eq!(
        points[0].1.get("lease.name").map(String::as_str),
        Some("named")
    );
    drop(lease);
}

#[tokio::test(start_paused = true)]
async fn spans_carry_their_fields_and_renewals_link_to_the_acquisition() {
    let t = telemetry();
    let rig = rig(LeaseOptions::default().with_default_lease_duration(secs(30.0)));
    rig.faults.script(Operation::Acquire, [Fault::Unavailable]);
    let lease = rig.manager.acquire("job").await.unwrap();
    advance(secs(20.0)).await;
    settle().await;
    lease.renew().await.unwrap();
    let id = lease.lease_id().to_owned();
    lease.release().await.unwrap();

    let spans = t.spans.get_finished_spans().unwrap();
    let find = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no {name} span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let acquire = find("Lease.Acquire");
    assert_eq!(
        attr(acquire, "lease.name").map(Value::to_string).as_deref(),
        Some("job")
    );
    assert_eq!(
        attr(acquire, "lease.id").map(Value::to_string),
        Some(id.clone())
    );
    assert_eq!(
        attr(acquire, "lease.provider")
            .map(Value::to_string)
            .as_deref(),
        Some("in-memory")
    );
    assert_eq!(
        attr(acquire, "lease.result")
            .map(Value::to_string)
            .as_deref(),
        Some("success")
    );
    assert_eq!(
        attr(acquire, "lease.retry_count")
            .map(Value::to_string)
            .as_deref(),
        Some("1")
    );
    assert!(attr(acquire, "lease.duration").is_some());
    for name in ["Lease.AutoRenewal", "Lease.Renew"] {
        let renew = find(name);
        assert_eq!(
            attr(renew, "lease.result").map(Value::to_string).as_deref(),
            Some("success"),
            "{name}"
        );
        assert_eq!(
            attr(renew, "lease.id").map(Value::to_string),
            Some(id.clone())
        );
        assert!(
            renew.links.iter().any(|l| l.span_context.trace_id()
                == acquire.span_context.trace_id()
                && l.span_context.span_id() == acquire.span_context.span_id()),
            "{name} is not linked to the acquisition"
        );
    }
    let release = find("Lease.Release");
    assert_eq!(
        attr(release, "lease.result")
            .map(Value::to_string)
            .as_deref(),
        Some("success")
    );
}

#[tokio::test(start_paused = true)]
async fn failed_operations_record_the_failure_reason() {
    let t = telemetry();
    let rig = rig(LeaseOptions::default()
        .with_default_lease_duration(secs(30.0))
        .with_acquire_timeout(secs(1.0)));
    let lease = rig.manager.acquire("job").await.unwrap();
    rig.faults.script(Operation::Renew, [Fault::Unavailable]);
    advance(secs(20.0)).await;
    settle().await;
    assert_eq!(
        rig.manager.acquire("job").await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
    settle().await;
    let spans = t.spans.get_finished_spans().unwrap();
    let failed_renewal = spans
        .iter()
        .find(|s| {
            s.name == "Lease.AutoRenewal"
                && attr(s, "lease.result").map(Value::to_string).as_deref() == Some("failure")
        })
        .expect("a failed renewal span");
    assert_eq!(
        attr(failed_renewal, "lease.failure_reason")
            .map(Value::to_string)
            .as_deref(),
        Some("provider_unavailable")
    );
    let failed_acquire = spans
        .iter()
        .find(|s| {
            s.name == "Lease.Acquire"
                && attr(s, "lease.result").map(Value::to_string).as_deref() == Some("failure")
        })
        .unwrap_or_else(|| {
            panic!(
                "a failed acquire span: {:#?}",
                spans
                    .iter()
                    .filter(|s| s.name == "Lease.Acquire")
                    .map(|s| &s.attributes)
                    .collect::<Vec<_>>()
            )
        });
    assert_eq!(
        attr(failed_acquire, "lease.failure_reason")
            .map(Value::to_string)
            .as_deref(),
        Some("timeout")
    );
    drop(lease);
}

/// Log events at the review's levels: acquired/released info, renewal failure warn, lost error.
#[tokio::test(start_paused = true)]
async fn log_events_use_the_stated_levels() {
    let levels = leasing_testkit::logs::Captured::default();
    let _g = levels.install();
    let rig = rig(LeaseOptions::default().with_default_lease_duration(secs(30.0)));
    let a = rig.manager.acquire("a").await.unwrap();
    let b = rig.manager.acquire("b").await.unwrap();
    rig.faults
        .script(Operation::Renew, [Fault::Unavailable, Fault::Lost]);
    advance(secs(20.0)).await;
    settle().await;
    a.release().await.unwrap();
    let seen = levels.events();
    let level_of = |needle: &str| {
        seen.iter()
            .find(|(_, m)| m.contains(needle))
            .map(|(l, _)| *l)
    };
    assert_eq!(level_of("lease acquired"), Some(tracing::Level::INFO));
    assert_eq!(level_of("lease released"), Some(tracing::Level::INFO));
    assert_eq!(level_of("lease renewal failed"), Some(tracing::Level::WARN));
    assert_eq!(level_of("lease lost"), Some(tracing::Level::ERROR));
    drop(b);
}

/// Ended leases count as released or lost by how they ended (two released, one lost:
/// a swapped label would show 1 and 2), and `lease.duration` carries the same result.
#[tokio::test(start_paused = true)]
async fn ended_leases_are_counted_by_how_they_ended() {
    let t = telemetry();
    let store = InMemoryLeaseProvider::new();
    let manager = LeaseManager::builder(Arc::new(store.clone()))
        .options(LeaseOptions::default().with_default_lease_duration(secs(30.0)))
        .meter(t.meter_provider.meter("distributed_leasing"))
        .build()
        .unwrap();
    let a = manager.acquire("a").await.unwrap();
    let b = manager.acquire("b").await.unwrap();
    let c = manager.acquire("c").await.unwrap();
    store.break_lease("c").await.unwrap();
    assert_eq!(c.renew().await.unwrap_err().kind(), ErrorKind::Lost);
    a.release().await.unwrap();
    b.release().await.unwrap();
    let m = t.collect();
    let p = |n: &str| &m[n].1;
    assert_eq!(total(p("leasing.releases.total"), None), 2.0);
    assert_eq!(total(p("leasing.leases_lost.total"), None), 1.0);
    assert_eq!(total(p("leasing.lease.duration"), Some("released")), 2.0);
    assert_eq!(total(p("leasing.lease.duration"), Some("lost")), 1.0);
    drop(c);
}

/// A `try_acquire` span records a failure reason only when it did not get the lease.
#[tokio::test(start_paused = true)]
async fn try_acquire_spans_record_a_failure_reason_only_on_failure() {
    let t = telemetry();
    let manager = LeaseManager::new(
        Arc::new(InMemoryLeaseProvider::new()),
        LeaseOptions::default(),
    )
    .unwrap();
    let lease = manager.try_acquire("job").await.unwrap().unwrap();
    assert!(manager.try_acquire("job").await.unwrap().is_none());
    settle().await;
    let spans = t.spans.get_finished_spans().unwrap();
    let acquires: Vec<_> = spans.iter().filter(|s| s.name == "Lease.Acquire").collect();
    assert_eq!(acquires.len(), 2);
    let reason = |s: &SpanData| attr(s, "lease.failure_reason").map(Value::to_string);
    let result = |s: &SpanData| attr(s, "lease.result").map(Value::to_string);
    let ok = acquires
        .iter()
        .find(|s| result(s).as_deref() == Some("success"))
        .expect("a successful try_acquire span");
    assert_eq!(reason(ok), None);
    let held = acquires
        .iter()
        .find(|s| result(s).as_deref() == Some("conflict"))
        .expect("a try_acquire span that found the name held");
    assert_eq!(reason(held).as_deref(), Some("conflict"));
    drop(lease);
}

/// A manager over a fault-injecting in-memory store, recording on `t`'s meter.
fn metered(t: &Telemetry, options: LeaseOptions) -> (LeaseManager, fault::FaultControl) {
    let faulty = fault::FaultInjectingProvider::new(Arc::new(InMemoryLeaseProvider::new()));
    let faults = faulty.control();
    let manager = LeaseManager::builder(Arc::new(faulty))
        .options(options)
        .meter(t.meter_provider.meter("distributed_leasing"))
        .build()
        .unwrap();
    (manager, faults)
}

/// Standbys polling a held name (`try_acquire` finding it held, `acquire` waiting until its
/// timeout) are contention: `result="held"`, counted in `leasing.acquisitions.contended`
/// and never in `leasing.acquisitions.failed`.
#[tokio::test(start_paused = true)]
async fn contention_is_not_a_failure() {
    let t = telemetry();
    let (manager, faults) = metered(
        &t,
        LeaseOptions::default()
            .with_default_lease_duration(secs(30.0))
            .with_acquire_timeout(secs(3.0)),
    );
    let leader = manager.acquire("leader").await.unwrap();
    for _ in 0..5 {
        assert!(manager.try_acquire("leader").await.unwrap().is_none());
        advance(secs(1.0)).await;
    }
    let err = manager.acquire("leader").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let err = manager
        .acquire_with("leader", AcquireOptions::new().timeout(Some(secs(2.0))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    // The first attempt finds the name held; the look right after subscribing is still
    // waiting for the backend at the deadline. The last answer was "held": contention
    // (the cut-off attempt shows as a `timeout` in the attempt histogram).
    faults.script(Operation::Acquire, [Fault::Delay(secs(0.0)), Fault::Hang]);
    let err = manager.acquire("leader").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let m = t.collect();
    let p = |n: &str| &m[n].1;
    assert_eq!(total(p("leasing.acquisitions.total"), None), 9.0);
    assert_eq!(total(p("leasing.acquisitions.total"), Some("held")), 8.0);
    assert_eq!(total(p("leasing.acquisitions.succeeded"), None), 1.0);
    assert_eq!(total(p("leasing.acquisitions.contended"), None), 8.0);
    assert_eq!(
        total(p("leasing.acquisitions.contended"), Some("held")),
        8.0
    );
    assert!(
        !m.contains_key("leasing.acquisitions.failed"),
        "no failure recorded: {:?}",
        m.get("leasing.acquisitions.failed")
    );
    // Every attempt's result is success or held, but for the one cut off.
    let attempts = p("leasing.acquisition.attempt.duration");
    assert_eq!(total(attempts, Some("success")), 1.0);
    assert_eq!(total(attempts, Some("timeout")), 1.0);
    assert_eq!(
        total(attempts, Some("held")),
        total(attempts, None) - 2.0,
        "{attempts:?}"
    );
    drop(leader);
}

/// Backend errors, and waits that end with the backend failing or not answering, stay
/// failures with the error's kind as `result`.
#[tokio::test(start_paused = true)]
async fn backend_failures_are_still_failures() {
    let t = telemetry();
    let (manager, faults) = metered(
        &t,
        LeaseOptions::default()
            .with_default_lease_duration(secs(30.0))
            .with_acquire_timeout(secs(1.0)),
    );
    // A try_acquire that meets an unavailable backend.
    faults.script(Operation::Acquire, [Fault::Unavailable]);
    assert_eq!(
        manager.try_acquire("a").await.unwrap_err().kind(),
        ErrorKind::ProviderUnavailable
    );
    // An acquire whose every attempt fails until the timeout: a timeout, not contention.
    faults.fail_randomly(Operation::Acquire, 1.0, Fault::Unavailable, 7);
    assert_eq!(
        manager.acquire("b").await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
    faults.clear();
    // An acquire whose attempt never gets an answer.
    faults.script(Operation::Acquire, [Fault::Hang]);
    assert_eq!(
        manager.acquire("c").await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
    let m = t.collect();
    let p = |n: &str| &m[n].1;
    assert_eq!(total(p("leasing.acquisitions.total"), None), 3.0);
    assert_eq!(
        total(
            p("leasing.acquisitions.failed"),
            Some("provider_unavailable")
        ),
        1.0
    );
    assert_eq!(
        total(p("leasing.acquisitions.failed"), Some("timeout")),
        2.0
    );
    assert!(!m.contains_key("leasing.acquisitions.contended"));
    // The hung attempt is measured up to the deadline that cut it off: a slow backend
    // shows in the attempt histogram.
    let hung = t
        .histogram("leasing.acquisition.attempt.duration")
        .into_iter()
        .find(|(_, _, _, a)| a.get("result").map(String::as_str) == Some("timeout"))
        .expect("the hung attempt");
    assert_eq!(hung.0, 1);
    assert!((hung.1 - 1000.0).abs() < 1.0, "{hung:?}");
}

/// `leasing.acquisition.attempt.duration` measures the backend call of each attempt, not
/// the wait for a held name, which only `leasing.acquisition.duration` includes.
#[tokio::test(start_paused = true)]
async fn attempt_duration_excludes_waiting() {
    let t = telemetry();
    let (manager, faults) = metered(
        &t,
        LeaseOptions::default()
            .with_default_lease_duration(secs(30.0))
            .with_acquire_timeout(secs(10.0)),
    );
    faults.set_latency(secs(0.05));
    let leader = manager.acquire("job").await.unwrap();
    // A standby waits 5 s in vain, another waits until the leader releases after 3 s.
    let err = manager
        .acquire_with("job", AcquireOptions::new().timeout(Some(secs(5.0))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let standby = {
        let manager = manager.clone();
        tokio::spawn(async move { manager.acquire("job").await })
    };
    // `sleep`, not `advance`: the clock then moves timer by timer, and the 50 ms calls in
    // flight end at their own instants.
    tokio::time::sleep(secs(3.0)).await;
    settle().await;
    leader.release().await.unwrap();
    let lease = standby.await.unwrap().unwrap();

    let attempts = t.histogram("leasing.acquisition.attempt.duration");
    let count: u64 = attempts.iter().map(|(c, ..)| c).sum();
    assert!(count >= 4, "{attempts:?}");
    for (_, _, max, a) in &attempts {
        // An attempt still in flight at the acquire deadline (a jittered retry can start
        // just before it) is cut off there: `timeout`, shorter.
        let answered = a.get("result").map(String::as_str) != Some("timeout");
        assert!(
            *max <= 50.0 && (!answered || *max == 50.0),
            "an attempt is one 50 ms backend call, no waiting: {max} ms for {a:?}"
        );
    }
    let whole = t.histogram("leasing.acquisition.duration");
    let max_of = |result: &str| {
        whole
            .iter()
            .find(|(_, _, _, a)| a.get("result").map(String::as_str) == Some(result))
            .map(|(_, _, max, _)| *max)
            .unwrap()
    };
    assert!(max_of("held") >= 5000.0, "{whole:?}");
    assert!(max_of("success") >= 3000.0, "{whole:?}");
    drop(lease);
}

/// `leasing.at_risk_leases.current` goes up when a renewal fails and back down when a
/// renewal succeeds, the lease is released, or it is lost while at risk.
#[tokio::test(start_paused = true)]
async fn at_risk_leases_go_up_and_back_down() {
    let t = telemetry();
    let (manager, faults) = metered(
        &t,
        LeaseOptions::default().with_default_lease_duration(secs(30.0)),
    );
    let at_risk = || total(&t.collect()["leasing.at_risk_leases.current"].1, None);
    /// Moves the clock a second at a time until `lease` is at risk.
    async fn until_at_risk(lease: &Lease) {
        for _ in 0..60 {
            if lease.state() == LeaseState::AtRisk {
                return;
            }
            advance(secs(1.0)).await;
            settle().await;
        }
        panic!("never at risk: {:?}", lease.state());
    }

    // Fails once, then renews: back to held.
    let one = manager.acquire("one").await.unwrap();
    faults.script(Operation::Renew, [Fault::Unavailable]);
    until_at_risk(&one).await;
    assert_eq!(at_risk(), 1.0);
    advance(secs(1.0)).await;
    settle().await;
    assert_eq!(one.state(), LeaseState::Held);
    assert_eq!(at_risk(), 0.0);

    // Released while at risk.
    faults.script(Operation::Renew, [Fault::Unavailable]);
    until_at_risk(&one).await;
    assert_eq!(at_risk(), 1.0);
    one.release().await.unwrap();
    assert_eq!(at_risk(), 0.0);

    // Lost while at risk.
    let two = manager.acquire("two").await.unwrap();
    faults.script(Operation::Renew, [Fault::Unavailable, Fault::Lost]);
    until_at_risk(&two).await;
    assert_eq!(at_risk(), 1.0);
    advance(secs(1.0)).await;
    settle().await;
    assert_eq!(two.state(), LeaseState::Lost);
    assert_eq!(at_risk(), 0.0);
    let m = t.collect();
    assert_eq!(total(&m["leasing.leases_lost.total"].1, None), 1.0);
    assert_eq!(total(&m["leasing.active_leases.current"].1, None), 0.0);
}

/// `leasing.health.status` holds the last result of each check: 0 healthy, 1 degraded,
/// 2 unhealthy, by `check` (`provider` for a probe, `leases` for the held leases).
#[tokio::test(start_paused = true)]
async fn health_checks_record_their_status() {
    let t = telemetry();
    let (manager, faults) = metered(
        &t,
        LeaseOptions::default().with_default_lease_duration(secs(30.0)),
    );
    let status = |check: &str| {
        t.collect()["leasing.health.status"]
            .1
            .iter()
            .find(|(_, a)| a.get("check").map(String::as_str) == Some(check))
            .map(|(v, a)| {
                assert_eq!(a.get("provider").map(String::as_str), Some("in-memory"));
                *v
            })
    };
    let lease = manager.acquire("job").await.unwrap();
    assert_eq!(manager.check_held_leases().status, HealthStatus::Healthy);
    assert_eq!(status("leases"), Some(0.0));
    assert_eq!(status("provider"), None, "no probe yet");
    faults.script(Operation::Renew, [Fault::Unavailable]);
    for _ in 0..60 {
        if lease.state() == LeaseState::AtRisk {
            break;
        }
        advance(secs(1.0)).await;
        settle().await;
    }
    assert_eq!(manager.check_held_leases().status, HealthStatus::Degraded);
    assert_eq!(status("leases"), Some(1.0));
    assert_eq!(manager.probe(secs(1.0)).await.status, HealthStatus::Healthy);
    assert_eq!(status("provider"), Some(0.0));
    faults.script(Operation::Acquire, [Fault::Unavailable]);
    assert_eq!(
        manager.probe(secs(1.0)).await.status,
        HealthStatus::Unhealthy
    );
    assert_eq!(status("provider"), Some(2.0));
    drop(lease);
}

/// The recipes' instruments: leadership transitions and the leading gauge, held permits
/// and waiters, and the election health check.
#[tokio::test(start_paused = true)]
async fn election_and_semaphore_instruments() {
    use leasing_abstractions::election::Election;
    use leasing_abstractions::semaphore::Semaphore;
    let t = telemetry();
    let store = InMemoryLeaseProvider::new();
    let faulty = leasing_abstractions::fault::FaultInjectingProvider::new(Arc::new(store));
    let faults = faulty.control();
    let manager = LeaseManager::builder(Arc::new(faulty))
        .options(LeaseOptions::default().with_default_lease_duration(secs(10.0)))
        .meter(t.meter_provider.meter("distributed_leasing"))
        .build()
        .unwrap();
    let e = Election::builder(&manager, "leader")
        .identity("a")
        .build()
        .unwrap();
    let lead = e.campaign().await.unwrap();
    assert_eq!(e.check_health().status, HealthStatus::Healthy);
    let m = t.collect();
    assert_eq!(
        total(&m["leasing.election.transitions"].1, Some("elected")),
        1.0
    );
    assert_eq!(m["leasing.election.transitions"].2, Kind::Counter);
    assert_eq!(total(&m["leasing.election.leading.current"].1, None), 1.0);
    assert_eq!(m["leasing.election.leading.current"].2, Kind::Gauge);
    let health = &m["leasing.health.status"].1;
    assert!(
        health
            .iter()
            .any(|(v, a)| *v == 0.0 && a.get("check").map(String::as_str) == Some("election")),
        "{health:?}"
    );
    lead.resign().await.unwrap();
    settle().await;
    let lead = e.campaign().await.unwrap();
    faults.script(Operation::Renew, vec![Fault::Hang; 64]);
    let _ = lead.lost().await;
    settle().await;
    let m = t.collect();
    let transitions = &m["leasing.election.transitions"].1;
    assert_eq!(total(transitions, Some("elected")), 2.0);
    assert_eq!(total(transitions, Some("resigned")), 1.0);
    assert_eq!(total(transitions, Some("lost")), 1.0);
    assert_eq!(total(&m["leasing.election.leading.current"].1, None), 0.0);
    faults.clear();
    drop(lead);

    let sem = Semaphore::builder(&manager, "pool", 1).build().unwrap();
    let p = sem.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let sem = sem.clone();
        async move { sem.acquire_timeout(None).await.unwrap() }
    });
    settle().await;
    let m = t.collect();
    assert_eq!(total(&m["leasing.semaphore.permits.current"].1, None), 1.0);
    assert_eq!(total(&m["leasing.semaphore.waiters.current"].1, None), 1.0);
    p.release().await.unwrap();
    let q = waiter.await.unwrap();
    let m = t.collect();
    assert_eq!(total(&m["leasing.semaphore.permits.current"].1, None), 1.0);
    assert_eq!(total(&m["leasing.semaphore.waiters.current"].1, None), 0.0);
    drop(q);
    let m = t.collect();
    assert_eq!(total(&m["leasing.semaphore.permits.current"].1, None), 0.0);
    assert_eq!(m["leasing.semaphore.permits.current"].0, "{permit}");
}
