//! Metrics registry rendered in the Prometheus text exposition format 0.0.4.
//!
//! Hot paths touch only atomics: unlabelled metrics are plain fields, and labelled
//! ones hand out `Arc` handles (`CounterVec::with`) that callers can keep. Looking a
//! label set up takes a read lock and does not allocate; only the first use of a new
//! label set takes the write lock.
//!
//! Label values often come from the network (SIP methods, status codes). Each family
//! caps its number of series so a peer sending garbage cannot grow memory or the
//! scrape without bound: past the cap, new label sets share one overflow series
//! whose labels all read `_overflow`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Series per labelled family before new label sets go to the overflow series.
pub const DEFAULT_MAX_SERIES: usize = 512;

/// Label value used for the overflow series and for missing label values.
pub const OVERFLOW_LABEL: &str = "_overflow";

/// Errors from registering metric families.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// A family with this name is already registered.
    #[error("metric {name} is already registered")]
    Duplicate { name: String },
    /// The name is not a valid Prometheus metric name.
    #[error("invalid metric name {name:?}")]
    InvalidName { name: String },
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn new() -> Counter {
        Counter::default()
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        // Relaxed: counters are independent, a scrape needs no ordering with other data.
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down. Signed, so an unbalanced decrement shows up as a
/// negative number instead of wrapping to 2^64.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn new() -> Gauge {
        Gauge::default()
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn dec(&self) {
        self.add(-1);
    }
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Increments now and decrements when the guard drops, so "active" gauges stay
    /// right on every exit path of a task.
    pub fn track(self: &Arc<Self>) -> GaugeGuard {
        self.inc();
        GaugeGuard(Arc::clone(self))
    }
}

/// See [`Gauge::track`].
#[derive(Debug)]
#[must_use = "the gauge is decremented when the guard drops"]
pub struct GaugeGuard(Arc<Gauge>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A histogram with fixed upper bounds (seconds or any unit the help text states).
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// Per-bucket (non-cumulative) counts; one extra for +Inf.
    buckets: Vec<AtomicU64>,
    /// f64 bits of the sum of observations.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// `bounds` must be increasing; non-finite and out-of-order bounds are dropped.
    pub fn new(bounds: &[f64]) -> Histogram {
        let mut clean: Vec<f64> = Vec::with_capacity(bounds.len());
        for &b in bounds {
            // (`is_none_or` would need Rust 1.82; the workspace supports 1.80.)
            let increasing = match clean.last() {
                None => true,
                Some(&last) => b > last,
            };
            if b.is_finite() && increasing {
                clean.push(b);
            }
        }
        let buckets = (0..=clean.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds: clean,
            buckets,
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        // No atomic f64 add: retry on contention, which is rare for one histogram.
        let mut current = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match self.sum.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }

    fn render_samples(&self, name: &str, out: &mut String) {
        let mut cumulative = 0u64;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        if let Some(inf) = self.buckets.last() {
            cumulative += inf.load(Ordering::Relaxed);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum());
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// What a family of series holds.
pub trait Sample: Default + Send + Sync + 'static {
    const TYPE: &'static str;
    fn value_text(&self) -> String;
}

impl Sample for Counter {
    const TYPE: &'static str = "counter";
    fn value_text(&self) -> String {
        self.get().to_string()
    }
}

impl Sample for Gauge {
    const TYPE: &'static str = "gauge";
    fn value_text(&self) -> String {
        self.get().to_string()
    }
}

#[derive(Debug)]
struct Series<T> {
    values: Vec<String>,
    metric: Arc<T>,
}

/// A family of series of `T` keyed by label values, e.g. `calls_total{outcome}`.
#[derive(Debug)]
pub struct MetricVec<T> {
    label_names: &'static [&'static str],
    max_series: usize,
    /// Hash of the label values -> series with that hash (collisions are compared).
    series: RwLock<HashMap<u64, Vec<Series<T>>>>,
    len: AtomicU64,
}

pub type CounterVec = MetricVec<Counter>;
pub type GaugeVec = MetricVec<Gauge>;

fn hash_values<S: AsRef<str>>(values: &[S]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for v in values {
        // str hashing appends a terminator, keeping ("ab","c") and ("a","bc") apart.
        v.as_ref().hash(&mut hasher);
    }
    hasher.finish()
}

fn same_values<S: AsRef<str>>(stored: &[String], wanted: &[S]) -> bool {
    stored.len() == wanted.len() && stored.iter().zip(wanted).all(|(a, b)| a == b.as_ref())
}

impl<T: Sample> MetricVec<T> {
    pub fn new(label_names: &'static [&'static str]) -> MetricVec<T> {
        MetricVec::with_max_series(label_names, DEFAULT_MAX_SERIES)
    }

    pub fn with_max_series(
        label_names: &'static [&'static str],
        max_series: usize,
    ) -> MetricVec<T> {
        MetricVec {
            label_names,
            max_series,
            series: RwLock::new(HashMap::new()),
            len: AtomicU64::new(0),
        }
    }

    /// The series for these label values (in `label_names` order), created on first
    /// use. Missing values read `_overflow`, extra values are ignored: a mismatch is a
    /// programming error, but metrics must never take the switch down.
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        let expected = self.label_names.len();
        if values.len() == expected {
            self.get_or_create(values)
        } else {
            tracing::error!(
                labels = ?self.label_names,
                ?values,
                "metric used with the wrong number of label values"
            );
            let fixed: Vec<&str> = (0..expected)
                .map(|i| values.get(i).copied().unwrap_or(OVERFLOW_LABEL))
                .collect();
            self.get_or_create(&fixed)
        }
    }

    fn lookup(map: &HashMap<u64, Vec<Series<T>>>, hash: u64, values: &[&str]) -> Option<Arc<T>> {
        map.get(&hash)?
            .iter()
            .find(|s| same_values(&s.values, values))
            .map(|s| Arc::clone(&s.metric))
    }

    fn get_or_create(&self, values: &[&str]) -> Arc<T> {
        let hash = hash_values(values);
        {
            // A poisoned lock only means another thread panicked mid-insert; the map
            // itself is still consistent (inserts are single push operations).
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = Self::lookup(&map, hash, values) {
                return found;
            }
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = Self::lookup(&map, hash, values) {
            return found;
        }
        let full = usize::try_from(self.len.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
            >= self.max_series;
        if full {
            let overflow = vec![OVERFLOW_LABEL; values.len()];
            let overflow_hash = hash_values(&overflow);
            if let Some(found) = Self::lookup(&map, overflow_hash, &overflow) {
                return found;
            }
            let metric = Arc::new(T::default());
            map.entry(overflow_hash).or_default().push(Series {
                values: overflow.iter().map(|v| (*v).to_owned()).collect(),
                metric: Arc::clone(&metric),
            });
            return metric;
        }
        let owned: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        let metric = Arc::new(T::default());
        map.entry(hash).or_default().push(Series {
            values: owned,
            metric: Arc::clone(&metric),
        });
        self.len.fetch_add(1, Ordering::Relaxed);
        metric
    }

    /// Every series as (label values, metric), sorted by label values.
    fn snapshot(&self) -> Vec<(Vec<String>, Arc<T>)> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(Vec<String>, Arc<T>)> = map
            .values()
            .flatten()
            .map(|s| (s.values.clone(), Arc::clone(&s.metric)))
            .collect();
        drop(map);
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn render_samples(&self, name: &str, out: &mut String) {
        for (values, metric) in self.snapshot() {
            out.push_str(name);
            write_labels(out, self.label_names, &values);
            out.push(' ');
            out.push_str(&metric.value_text());
            out.push('\n');
        }
    }
}

impl CounterVec {
    /// Shorthand for `with(values).inc()` on paths too cold to cache the handle.
    pub fn inc(&self, values: &[&str]) {
        self.with(values).inc();
    }
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes HELP text: backslash and line feed.
fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_labels(out: &mut String, names: &[&str], values: &[String]) {
    if names.is_empty() {
        return;
    }
    out.push('{');
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(value, out);
        out.push('"');
    }
    out.push('}');
}

fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(help, out);
    out.push('\n');
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Something that can be rendered into the exposition; implement it to add metric
/// families owned by other modules (see [`Metrics::register`]).
pub trait Collector: Send + Sync {
    /// Family name, e.g. `rtp_jitter_seconds`.
    fn name(&self) -> &str;
    /// Appends `# HELP`, `# TYPE` and the samples.
    fn render(&self, out: &mut String);
}

/// A named family: metric + help text.
#[derive(Debug)]
pub struct Family<M> {
    name: &'static str,
    help: &'static str,
    metric: M,
}

impl<M> Family<M> {
    pub fn new(name: &'static str, help: &'static str, metric: M) -> Family<M> {
        Family { name, help, metric }
    }
}

impl<M> std::ops::Deref for Family<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.metric
    }
}

impl Collector for Family<Arc<Counter>> {
    fn name(&self) -> &str {
        self.name
    }
    fn render(&self, out: &mut String) {
        write_header(out, self.name, self.help, Counter::TYPE);
        let _ = writeln!(out, "{} {}", self.name, self.metric.get());
    }
}

impl Collector for Family<Arc<Gauge>> {
    fn name(&self) -> &str {
        self.name
    }
    fn render(&self, out: &mut String) {
        write_header(out, self.name, self.help, Gauge::TYPE);
        let _ = writeln!(out, "{} {}", self.name, self.metric.get());
    }
}

impl<T: Sample> Collector for Family<MetricVec<T>> {
    fn name(&self) -> &str {
        self.name
    }
    fn render(&self, out: &mut String) {
        write_header(out, self.name, self.help, T::TYPE);
        self.metric.render_samples(self.name, out);
    }
}

impl Collector for Family<Histogram> {
    fn name(&self) -> &str {
        self.name
    }
    fn render(&self, out: &mut String) {
        write_header(out, self.name, self.help, "histogram");
        self.metric.render_samples(self.name, out);
    }
}

/// Direction of a SIP message or response relative to the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Known SIP methods keep their name as label; anything else becomes `other`, so a
/// peer cannot mint new series with made-up methods.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    ];
    KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// Label text for a status code without allocating; out-of-range codes read `other`.
fn status_label(status: u16, buf: &mut [u8; 3]) -> &str {
    if !(100..=999).contains(&status) {
        return "other";
    }
    let digits = [status / 100, (status / 10) % 10, status % 10];
    for (slot, d) in buf.iter_mut().zip(digits) {
        // d < 10, so the cast cannot truncate.
        *slot = b'0' + d as u8;
    }
    std::str::from_utf8(buf).unwrap_or("other")
}

/// A histogram's state read from where it is kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds, increasing (the `+Inf` bucket is implied).
    pub bounds: Vec<f64>,
    /// Cumulative counts per bound, then the `+Inf` count.
    pub cumulative: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

/// Reads a [`HistogramSnapshot`] at render time.
pub type HistogramSource = Arc<dyn Fn() -> HistogramSnapshot + Send + Sync>;

/// A histogram kept elsewhere and read when `/metrics` is rendered: the
/// relay's added latency lives in the media loops' own lock-free counters
/// (one shard per loop), so the packet path never touches this registry.
#[derive(Default)]
pub struct ExternalHistogram {
    source: RwLock<Option<HistogramSource>>,
}

impl std::fmt::Debug for ExternalHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalHistogram").finish_non_exhaustive()
    }
}

impl ExternalHistogram {
    pub fn set_source(&self, source: HistogramSource) {
        *self.source.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let source = self
            .source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        source.map(|f| f()).unwrap_or_default()
    }
}

impl Collector for Family<ExternalHistogram> {
    fn name(&self) -> &str {
        self.name
    }
    fn render(&self, out: &mut String) {
        write_header(out, self.name, self.help, "histogram");
        let snap = self.metric.snapshot();
        let name = self.name;
        for (bound, n) in snap.bounds.iter().zip(&snap.cumulative) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let inf = snap.cumulative.last().copied().unwrap_or(snap.count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {inf}");
        let _ = writeln!(out, "{name}_sum {}", snap.sum);
        let _ = writeln!(out, "{name}_count {}", snap.count);
    }
}

/// The switch's metrics. Share it as `Arc<Metrics>`; fields are public so hot paths
/// can use (and cache) the handles directly.
pub struct Metrics {
    /// `{kind="request|response", method}`; responses carry their CSeq method.
    pub sip_messages_in_total: Family<CounterVec>,
    pub sip_messages_out_total: Family<CounterVec>,
    /// `{direction="in|out", status}`.
    pub sip_responses_total: Family<CounterVec>,
    /// `{direction}`: `out` = sent again by our timers, `in` = duplicates absorbed.
    pub sip_retransmissions_total: Family<CounterVec>,
    /// `{reason}`.
    pub sip_parse_errors_total: Family<CounterVec>,
    pub sip_transactions_active: Family<Arc<Gauge>>,
    pub sip_dialogs_active: Family<Arc<Gauge>>,
    pub calls_active: Family<Arc<Gauge>>,
    /// RTP ports the relay can still hand out (a leak shows as a drop that never recovers).
    pub media_ports_free: Family<Arc<Gauge>>,
    /// `{outcome}`, e.g. answered, busy, no_answer, failed, rejected, cancelled.
    pub calls_total: Family<CounterVec>,
    pub rtp_packets_relayed_total: Family<Arc<Counter>>,
    pub rtp_bytes_relayed_total: Family<Arc<Counter>>,
    /// `{reason}`.
    pub rtp_packets_dropped_total: Family<CounterVec>,
    /// Fed by the media loops ([`ExternalHistogram::set_source`]).
    pub rtp_relay_latency_seconds: Family<ExternalHistogram>,
    /// `{route, status}`; route is the matched route template, never the raw path.
    pub http_requests_total: Family<CounterVec>,
    build_info: Family<GaugeVec>,
    extra: RwLock<Vec<Arc<dyn Collector>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

const MESSAGE_LABELS: &[&str] = &["kind", "method"];

impl Metrics {
    pub fn new() -> Metrics {
        let build_info = Family::new(
            "softswitch_build_info",
            "Build information; always 1.",
            GaugeVec::new(&["version"]),
        );
        build_info.with(&[env!("CARGO_PKG_VERSION")]).set(1);
        Metrics {
            sip_messages_in_total: Family::new(
                "sip_messages_in_total",
                "SIP messages received, by kind and method.",
                CounterVec::new(MESSAGE_LABELS),
            ),
            sip_messages_out_total: Family::new(
                "sip_messages_out_total",
                "SIP messages sent, by kind and method.",
                CounterVec::new(MESSAGE_LABELS),
            ),
            sip_responses_total: Family::new(
                "sip_responses_total",
                "SIP responses by direction and status code.",
                CounterVec::new(&["direction", "status"]),
            ),
            sip_retransmissions_total: Family::new(
                "sip_retransmissions_total",
                "SIP retransmissions: out = sent by our timers, in = duplicates received.",
                CounterVec::new(&["direction"]),
            ),
            sip_parse_errors_total: Family::new(
                "sip_parse_errors_total",
                "Unparseable SIP messages, by reason.",
                CounterVec::new(&["reason"]),
            ),
            sip_transactions_active: Family::new(
                "sip_transactions_active",
                "SIP transactions currently alive.",
                Arc::new(Gauge::new()),
            ),
            sip_dialogs_active: Family::new(
                "sip_dialogs_active",
                "SIP dialogs currently alive.",
                Arc::new(Gauge::new()),
            ),
            calls_active: Family::new("calls_active", "Calls in progress.", Arc::new(Gauge::new())),
            media_ports_free: Family::new(
                "media_ports_free",
                "RTP relay ports (RTP+RTCP pairs count as one) still free in the pool.",
                Arc::new(Gauge::new()),
            ),
            calls_total: Family::new(
                "calls_total",
                "Finished calls by outcome.",
                CounterVec::new(&["outcome"]),
            ),
            rtp_packets_relayed_total: Family::new(
                "rtp_packets_relayed_total",
                "RTP/RTCP packets relayed.",
                Arc::new(Counter::new()),
            ),
            rtp_bytes_relayed_total: Family::new(
                "rtp_bytes_relayed_total",
                "RTP/RTCP payload bytes relayed.",
                Arc::new(Counter::new()),
            ),
            rtp_packets_dropped_total: Family::new(
                "rtp_packets_dropped_total",
                "RTP/RTCP packets dropped, by reason.",
                CounterVec::new(&["reason"]),
            ),
            rtp_relay_latency_seconds: Family::new(
                "rtp_relay_latency_seconds",
                "Time from receiving a packet to sending it on.",
                ExternalHistogram::default(),
            ),
            http_requests_total: Family::new(
                "http_requests_total",
                "HTTP requests by route and status.",
                CounterVec::new(&["route", "status"]),
            ),
            build_info,
            extra: RwLock::new(Vec::new()),
        }
    }

    /// Counts a received SIP request.
    pub fn sip_request_in(&self, method: &str) {
        self.sip_messages_in_total
            .inc(&["request", method_label(method)]);
    }

    /// Counts a sent SIP request.
    pub fn sip_request_out(&self, method: &str) {
        self.sip_messages_out_total
            .inc(&["request", method_label(method)]);
    }

    /// Counts a SIP response (its CSeq method and status code) in either direction.
    pub fn sip_response(&self, direction: Direction, cseq_method: &str, status: u16) {
        let messages = match direction {
            Direction::In => &self.sip_messages_in_total,
            Direction::Out => &self.sip_messages_out_total,
        };
        messages.inc(&["response", method_label(cseq_method)]);
        let mut buf = [0u8; 3];
        self.sip_responses_total
            .inc(&[direction.as_str(), status_label(status, &mut buf)]);
    }

    /// Counts a retransmission: `Out` = re-sent by our timers, `In` = duplicate absorbed.
    pub fn sip_retransmission(&self, direction: Direction) {
        self.sip_retransmissions_total.inc(&[direction.as_str()]);
    }

    /// Counts a message that could not be parsed. `reason` should come from a small
    /// fixed set (e.g. `start_line`, `header`, `too_large`), never from the input.
    pub fn sip_parse_error(&self, reason: &str) {
        self.sip_parse_errors_total.inc(&[reason]);
    }

    /// Counts a finished call by outcome.
    pub fn call_ended(&self, outcome: &str) {
        self.calls_total.inc(&[outcome]);
    }

    /// Counts an HTTP request by route template and status.
    pub fn http_request(&self, route: &str, status: u16) {
        let mut buf = [0u8; 3];
        self.http_requests_total
            .inc(&[route, status_label(status, &mut buf)]);
    }

    /// Adds a family owned elsewhere; it is rendered after the built-in ones.
    pub fn register(&self, collector: Arc<dyn Collector>) -> Result<(), MetricsError> {
        let name = collector.name().to_owned();
        if !valid_metric_name(&name) {
            return Err(MetricsError::InvalidName { name });
        }
        let mut extra = self.extra.write().unwrap_or_else(|e| e.into_inner());
        if self.builtin().iter().any(|c| c.name() == name) || extra.iter().any(|c| c.name() == name)
        {
            return Err(MetricsError::Duplicate { name });
        }
        extra.push(collector);
        Ok(())
    }

    fn builtin(&self) -> [&dyn Collector; 16] {
        [
            &self.sip_messages_in_total,
            &self.sip_messages_out_total,
            &self.sip_responses_total,
            &self.sip_retransmissions_total,
            &self.sip_parse_errors_total,
            &self.sip_transactions_active,
            &self.sip_dialogs_active,
            &self.calls_active,
            &self.calls_total,
            &self.media_ports_free,
            &self.rtp_packets_relayed_total,
            &self.rtp_bytes_relayed_total,
            &self.rtp_packets_dropped_total,
            &self.rtp_relay_latency_seconds,
            &self.http_requests_total,
            &self.build_info,
        ]
    }

    /// The whole exposition, Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for collector in self.builtin() {
            collector.render(&mut out);
        }
        let extra = self.extra.read().unwrap_or_else(|e| e.into_inner());
        for collector in extra.iter() {
            collector.render(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_registry_renders_exactly() {
        let m = Metrics::new();
        m.sip_request_in("INVITE");
        m.sip_request_in("INVITE");
        m.sip_request_in("FOO");
        m.sip_response(Direction::Out, "INVITE", 200);
        m.sip_response(Direction::In, "BYE", 487);
        m.sip_parse_error("bad \"start\"\nline\\x");
        m.sip_retransmission(Direction::Out);
        m.calls_active.set(2);
        m.calls_total.with(&["answered"]).add(2);
        m.call_ended("answered");
        m.rtp_relay_latency_seconds
            .set_source(Arc::new(|| HistogramSnapshot {
                bounds: vec![
                    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
                ],
                cumulative: vec![0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2],
                sum: 1.0002,
                count: 2,
            }));
        m.http_request("/healthz", 200);
        let text = m.render();
        let expected = r#"# HELP sip_messages_in_total SIP messages received, by kind and method.
# TYPE sip_messages_in_total counter
sip_messages_in_total{kind="request",method="INVITE"} 2
sip_messages_in_total{kind="request",method="other"} 1
sip_messages_in_total{kind="response",method="BYE"} 1
# HELP sip_messages_out_total SIP messages sent, by kind and method.
# TYPE sip_messages_out_total counter
sip_messages_out_total{kind="response",method="INVITE"} 1
# HELP sip_responses_total SIP responses by direction and status code.
# TYPE sip_responses_total counter
sip_responses_total{direction="in",status="487"} 1
sip_responses_total{direction="out",status="200"} 1
# HELP sip_retransmissions_total SIP retransmissions: out = sent by our timers, in = duplicates received.
# TYPE sip_retransmissions_total counter
sip_retransmissions_total{direction="out"} 1
# HELP sip_parse_errors_total Unparseable SIP messages, by reason.
# TYPE sip_parse_errors_total counter
sip_parse_errors_total{reason="bad \"start\"\nline\\x"} 1
# HELP sip_transactions_active SIP transactions currently alive.
# TYPE sip_transactions_active gauge
sip_transactions_active 0
# HELP sip_dialogs_active SIP dialogs currently alive.
# TYPE sip_dialogs_active gauge
sip_dialogs_active 0
# HELP calls_active Calls in progress.
# TYPE calls_active gauge
calls_active 2
# HELP calls_total Finished calls by outcome.
# TYPE calls_total counter
calls_total{outcome="answered"} 3
# HELP media_ports_free RTP relay ports (RTP+RTCP pairs count as one) still free in the pool.
# TYPE media_ports_free gauge
media_ports_free 0
# HELP rtp_packets_relayed_total RTP/RTCP packets relayed.
# TYPE rtp_packets_relayed_total counter
rtp_packets_relayed_total 0
# HELP rtp_bytes_relayed_total RTP/RTCP payload bytes relayed.
# TYPE rtp_bytes_relayed_total counter
rtp_bytes_relayed_total 0
# HELP rtp_packets_dropped_total RTP/RTCP packets dropped, by reason.
# TYPE rtp_packets_dropped_total counter
# HELP rtp_relay_latency_seconds Time from receiving a packet to sending it on.
# TYPE rtp_relay_latency_seconds histogram
rtp_relay_latency_seconds_bucket{le="0.00001"} 0
rtp_relay_latency_seconds_bucket{le="0.00005"} 0
rtp_relay_latency_seconds_bucket{le="0.0001"} 0
rtp_relay_latency_seconds_bucket{le="0.00025"} 1
rtp_relay_latency_seconds_bucket{le="0.0005"} 1
rtp_relay_latency_seconds_bucket{le="0.001"} 1
rtp_relay_latency_seconds_bucket{le="0.0025"} 1
rtp_relay_latency_seconds_bucket{le="0.005"} 1
rtp_relay_latency_seconds_bucket{le="0.01"} 1
rtp_relay_latency_seconds_bucket{le="0.05"} 1
rtp_relay_latency_seconds_bucket{le="+Inf"} 2
rtp_relay_latency_seconds_sum 1.0002
rtp_relay_latency_seconds_count 2
# HELP http_requests_total HTTP requests by route and status.
# TYPE http_requests_total counter
http_requests_total{route="/healthz",status="200"} 1
# HELP softswitch_build_info Build information; always 1.
# TYPE softswitch_build_info gauge
softswitch_build_info{version="0.1.0"} 1
"#;
        let expected = expected.replace("0.1.0", env!("CARGO_PKG_VERSION"));
        assert_eq!(text, expected);
    }

    #[test]
    fn handles_are_shared_and_cached() {
        let v = CounterVec::new(&["a", "b"]);
        let h1 = v.with(&["x", "y"]);
        let h2 = v.with(&["x", "y"]);
        assert!(Arc::ptr_eq(&h1, &h2));
        h1.inc();
        h2.add(2);
        assert_eq!(v.with(&["x", "y"]).get(), 3);
        // Concatenation ambiguity does not merge series.
        assert!(!Arc::ptr_eq(&v.with(&["xy", ""]), &v.with(&["x", "y"])));
    }

    #[test]
    fn wrong_label_count_does_not_panic() {
        let v = CounterVec::new(&["a", "b"]);
        v.inc(&["only"]);
        v.inc(&["x", "y", "z"]);
        let mut out = String::new();
        v.render_samples("m", &mut out);
        assert_eq!(
            out,
            "m{a=\"only\",b=\"_overflow\"} 1\nm{a=\"x\",b=\"y\"} 1\n"
        );
    }

    #[test]
    fn series_are_capped() {
        let v = CounterVec::with_max_series(&["m"], 2);
        v.inc(&["a"]);
        v.inc(&["b"]);
        v.inc(&["c"]);
        v.inc(&["d"]);
        v.inc(&["a"]);
        let mut out = String::new();
        v.render_samples("x", &mut out);
        assert_eq!(out, "x{m=\"_overflow\"} 2\nx{m=\"a\"} 2\nx{m=\"b\"} 1\n");
    }

    #[test]
    fn gauge_guard_decrements_on_drop() {
        let m = Metrics::new();
        {
            let _a = m.calls_active.track();
            let _b = m.calls_active.track();
            assert_eq!(m.calls_active.get(), 2);
        }
        assert_eq!(m.calls_active.get(), 0);
    }

    #[test]
    fn status_and_method_labels() {
        let mut buf = [0u8; 3];
        assert_eq!(status_label(100, &mut buf), "100");
        assert_eq!(status_label(699, &mut buf), "699");
        assert_eq!(status_label(99, &mut buf), "other");
        assert_eq!(status_label(1000, &mut buf), "other");
        assert_eq!(method_label("REGISTER"), "REGISTER");
        assert_eq!(method_label("register"), "other");
    }

    struct Extra;
    impl Collector for Extra {
        fn name(&self) -> &str {
            "rtp_jitter_seconds"
        }
        fn render(&self, out: &mut String) {
            out.push_str("# TYPE rtp_jitter_seconds gauge\nrtp_jitter_seconds 0.5\n");
        }
    }

    struct Named(&'static str);
    impl Collector for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn render(&self, _out: &mut String) {}
    }

    #[test]
    fn extra_collectors() {
        let m = Metrics::new();
        m.register(Arc::new(Extra)).unwrap();
        assert!(m.render().ends_with("rtp_jitter_seconds 0.5\n"));
        assert_eq!(
            m.register(Arc::new(Extra)),
            Err(MetricsError::Duplicate {
                name: "rtp_jitter_seconds".into()
            })
        );
        assert!(matches!(
            m.register(Arc::new(Named("calls_active"))),
            Err(MetricsError::Duplicate { .. })
        ));
        assert!(matches!(
            m.register(Arc::new(Named("9bad-name"))),
            Err(MetricsError::InvalidName { .. })
        ));
    }

    #[test]
    fn concurrent_increments_are_not_lost() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    let h = m.calls_total.with(&["answered"]);
                    for _ in 0..1000 {
                        h.inc();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.calls_total.with(&["answered"]).get(), 4000);
    }
}
