//! [`PushHub`]: the device queues, their long polls, and provider delivery.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::apns::{self, ApnsClient};
use super::fcm::{self, FcmClient};
use super::{Provider, PushConfig, PushError, SendOutcome, CALLER_HOOKON, P2P_INFORM_CALLED};
use crate::store::{now_ms, ClaimedEvents, NewPushDelivery, PushEvent, Store};

/// How provider pushes are retried: `attempts` tries in all, waiting `first_delay`
/// after the first failure and doubling up to `max_delay` (plus up to 25 % jitter, so
/// a provider outage does not end in every push retrying in the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let base = self.first_delay.saturating_mul(factor).min(self.max_delay);
        base.mul_f64(1.0 + rand::random::<f64>() * 0.25)
    }
}

/// Tuning that is not in the config file (defaults suit production; tests shorten
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubOptions {
    /// Most events one poll returns (the rest come with the next poll, at once).
    pub batch: i64,
    /// A waiting poll looks at the store this often even without a wake-up: events
    /// queued by another process sharing the database, or written to the store
    /// directly (not through [`PushHub::notify`]), arrive within this delay.
    pub recheck: Duration,
    /// How often [`PushHub::spawn_purger`] applies retention.
    pub purge_every: Duration,
    pub retry: RetryPolicy,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            batch: 100,
            recheck: Duration::from_secs(5),
            purge_every: Duration::from_secs(600),
            retry: RetryPolicy::default(),
        }
    }
}

/// The answer to one long poll.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PollOutcome {
    /// Oldest first; each the queued event object with its `seq` added. Empty after
    /// the idle timeout (answer `shake_hand`), when replaced, or when unlogined.
    pub events: Vec<Value>,
    /// Events after the client's `last_seq` were removed by retention before they
    /// could be delivered (or `last_seq` is not a number this queue issued: the
    /// client cannot be sure it saw everything).
    pub gap: bool,
    /// A newer poll for the same device took over; this one returns at once with no
    /// events (the client that opened it is presumably gone).
    pub replaced: bool,
    /// Only from [`PushHub::poll_session`]: the device is not the account's current
    /// login and nothing is queued for it any more.
    pub unlogined: bool,
}

/// One device's rendezvous: polls wait on `notify`; `gen` names the current poll.
#[derive(Debug, Default)]
struct Slot {
    gen: AtomicU64,
    notify: Notify,
}

struct Inner<S> {
    store: S,
    apns: Option<ApnsClient>,
    fcm: Option<FcmClient>,
    options: HubOptions,
    long_poll_timeout: Duration,
    retention: Duration,
    /// Devices with an open poll. Generations change only under this lock, which is
    /// what lets a closing poll tell whether it may remove its slot.
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Provider deliveries still running, for [`PushHub::flush`].
    inflight: AtomicUsize,
    drained: Notify,
}

/// The push side of the switch: queues events per device durably, serves each
/// device's long poll, pushes call events to the device's APNs/FCM tokens.
///
/// Cheap to clone (one shared state); generic over the store so tests can run it on
/// either back end.
pub struct PushHub<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for PushHub<S> {
    fn clone(&self) -> Self {
        PushHub {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> std::fmt::Debug for PushHub<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushHub")
            .field("apns", &self.inner.apns.is_some())
            .field("fcm", &self.inner.fcm.is_some())
            .field("open_polls", &lock(&self.inner.slots).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks can be left half-done by a panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn slot_key(account: &str, device: &str) -> String {
    format!("{account}\u{0}{device}")
}

/// The event as the poll returns it: the stored object with `seq` added.
fn with_seq(e: PushEvent) -> Value {
    match e.event {
        Value::Object(mut map) => {
            map.insert("seq".to_owned(), Value::from(e.seq));
            Value::Object(map)
        }
        // Only objects are queued through the hub; keep anything else deliverable.
        other => serde_json::json!({"data": other, "seq": e.seq}),
    }
}

/// Whether the client resuming from `last_seq` missed events: retention removed one
/// after it, or the number is beyond anything this queue issued (the database was
/// replaced, or the number is from another queue).
fn gap_of(last_seq: Option<i64>, claimed: &ClaimedEvents) -> bool {
    match last_seq {
        None => false,
        Some(n) => n < claimed.purged_through || n > claimed.last_issued,
    }
}

/// `<voip token>__<md5 of the push certificate name>` (the cloud-style API's
/// `device_id`) split into the token and the certificate hash.
pub fn split_cloud_device_id(device_id: &str) -> Option<(&str, &str)> {
    let (token, cert) = device_id.split_once("__")?;
    (!token.is_empty() && !cert.is_empty()).then_some((token, cert))
}

/// Checks a provider token before it is stored.
fn check_token(provider: Provider, token: &str) -> Result<(), PushError> {
    let bad = |problem| PushError::BadToken {
        provider: provider.as_str(),
        problem,
    };
    if token.is_empty() {
        return Err(bad("empty"));
    }
    if token.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    match provider {
        Provider::Apns if !apns::is_device_token(token) => Err(bad("not hex digits (at most 200)")),
        _ if token.bytes().any(|b| !b.is_ascii_graphic()) => {
            Err(bad("contains spaces or control characters"))
        }
        _ => Ok(()),
    }
}

impl<S: Store + Clone> PushHub<S> {
    /// A hub on `store` with the providers `config` enables. Reads the provider keys
    /// now: an unusable key is an error here, not at the first call.
    pub fn new(store: S, config: &PushConfig) -> Result<PushHub<S>, PushError> {
        Self::with_options(store, config, HubOptions::default())
    }

    pub fn with_options(
        store: S,
        config: &PushConfig,
        options: HubOptions,
    ) -> Result<PushHub<S>, PushError> {
        let apns = config.apns.as_ref().map(ApnsClient::new).transpose()?;
        let fcm = config.fcm.as_ref().map(FcmClient::new).transpose()?;
        Ok(PushHub {
            inner: Arc::new(Inner {
                store,
                apns,
                fcm,
                options,
                long_poll_timeout: config.long_poll_timeout(),
                retention: config.retention(),
                slots: Mutex::new(HashMap::new()),
                inflight: AtomicUsize::new(0),
                drained: Notify::new(),
            }),
        })
    }

    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// `[push] long_poll_timeout_s`: the idle timeout to pass to [`PushHub::poll`].
    pub fn long_poll_timeout(&self) -> Duration {
        self.inner.long_poll_timeout
    }

    /// Devices with a poll open right now (for metrics).
    pub fn open_polls(&self) -> usize {
        lock(&self.inner.slots).len()
    }

    // --- the long poll -----------------------------------------------------------

    /// One long poll of a device's queue.
    ///
    /// - `last_seq` `None`: the device's undelivered events, oldest first.
    /// - `last_seq` `Some(n)`: every retained event after `n`, also ones delivered
    ///   before (the client says it did not see them: a reply lost with its
    ///   connection), and `gap` when retention removed some after `n`.
    ///
    /// Returns at once when there is something; otherwise waits until an event is
    /// queued for the device or `idle` passes (then `events` is empty: answer
    /// `shake_hand`). What is returned is marked delivered in the store, atomically:
    /// an undelivered event goes to exactly one poll, even with several processes on
    /// one PostgreSQL. One open poll per device: a newer poll makes an older one
    /// return at once with `replaced`.
    ///
    /// Dropping the future (the client hung up) closes the poll. Events it had
    /// already claimed are then marked delivered without having reached anyone; a
    /// client that resumes with `last_seq` gets them again.
    pub async fn poll(
        &self,
        account: &str,
        device: &str,
        last_seq: Option<i64>,
        idle: Duration,
    ) -> Result<PollOutcome, PushError> {
        let open = self.open(account, device);
        let slot = Arc::clone(&open.slot);
        let deadline = Instant::now() + idle;
        let mut gap = false;
        loop {
            // Registered before looking at the store, so an event queued after the
            // look still wakes this poll.
            let notified = slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if slot.gen.load(Ordering::SeqCst) != open.gen {
                return Ok(PollOutcome {
                    replaced: true,
                    ..PollOutcome::default()
                });
            }
            let claimed = self
                .inner
                .store
                .claim_events(
                    account,
                    device,
                    last_seq,
                    self.inner.options.batch,
                    now_ms(),
                )
                .await?;
            // A gap with nothing to deliver does not end the poll early: the client
            // could not move past it (it has no newer seq to send), so answering at
            // once would make it spin. It is told with the idle reply instead.
            gap |= gap_of(last_seq, &claimed);
            if !claimed.events.is_empty() {
                return Ok(PollOutcome {
                    events: claimed.events.into_iter().map(with_seq).collect(),
                    gap,
                    ..PollOutcome::default()
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(PollOutcome {
                    gap,
                    ..PollOutcome::default()
                });
            }
            let wait = (deadline - now).min(self.inner.options.recheck);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// [`PushHub::poll`] for `/channel/push_service`, which also answers `unlogined`:
    /// when `device` is the account's current login, a normal poll; otherwise what is
    /// still queued for the device is returned at once (so a device logged out by a
    /// login elsewhere still gets its `login_otherwhere`), and when nothing is,
    /// `unlogined`. The caller checks the login token, if the request has one.
    pub async fn poll_session(
        &self,
        account: &str,
        device: &str,
        last_seq: Option<i64>,
        idle: Duration,
    ) -> Result<PollOutcome, PushError> {
        let current = self.inner.store.get_login(account).await?;
        if current.is_some_and(|l| l.device == device) {
            return self.poll(account, device, last_seq, idle).await;
        }
        let mut out = self.poll(account, device, last_seq, Duration::ZERO).await?;
        if out.events.is_empty() && !out.replaced {
            out.unlogined = true;
        }
        Ok(out)
    }

    /// Opens a poll for the device: a new generation, and a wake-up for the poll it
    /// replaces.
    fn open(&self, account: &str, device: &str) -> OpenPoll<'_, S> {
        let key = slot_key(account, device);
        let mut slots = lock(&self.inner.slots);
        let slot = Arc::clone(slots.entry(key.clone()).or_default());
        let gen = slot.gen.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        slot.notify.notify_waiters();
        drop(slots);
        OpenPoll {
            inner: &self.inner,
            key,
            slot,
            gen,
        }
    }

    /// Wakes the device's open poll, if any, to look at the store. [`notify`] does
    /// this itself; call it after queueing an event with [`Store::enqueue_event`]
    /// directly (or the poll only finds it at its next recheck).
    ///
    /// [`notify`]: PushHub::notify
    pub fn wake(&self, account: &str, device: &str) {
        let slots = lock(&self.inner.slots);
        if let Some(slot) = slots.get(&slot_key(account, device)) {
            slot.notify.notify_waiters();
        }
    }

    // --- queueing ----------------------------------------------------------------

    /// Queues `event` (a JSON object with a string `event` field) for a device of
    /// `account` and returns its seq.
    ///
    /// `device` `None` addresses the account's current login; with no login there is
    /// no device to address and nothing is queued ([`PushError::NotLoggedIn`]: the
    /// user is offline; the call layer may fall back to the phone). An explicitly
    /// named device gets the event whether or not a poll is open: it waits in the
    /// queue (for the retention time) for the device's next poll.
    ///
    /// `p2p_inform_called` and `caller_hookon` are also pushed to the device's APNs
    /// and FCM tokens, in the background (this returns once the event is queued and
    /// the poll woken), with retries; each attempt is recorded in the store.
    pub async fn notify(
        &self,
        account: &str,
        device: Option<&str>,
        event: Value,
    ) -> Result<i64, PushError> {
        let kind = match event.get("event") {
            Some(Value::String(k)) if event.is_object() => k.clone(),
            _ => {
                return Err(PushError::BadEvent(
                    "must be an object with a string `event` field",
                ))
            }
        };
        let device = match device {
            Some(d) => d.to_owned(),
            None => match self.inner.store.get_login(account).await? {
                Some(login) => login.device,
                None => return Err(PushError::NotLoggedIn(account.to_owned())),
            },
        };
        let seq = self
            .inner
            .store
            .enqueue_event(account, &device, &event, now_ms())
            .await?;
        self.wake(account, &device);
        let pushed = kind == P2P_INFORM_CALLED || kind == CALLER_HOOKON;
        if pushed && (self.inner.apns.is_some() || self.inner.fcm.is_some()) {
            self.spawn_tracked(push_to_providers(
                Arc::clone(&self.inner),
                account.to_owned(),
                device,
                seq,
                event,
            ));
        }
        Ok(seq)
    }

    /// Runs `fut` as a task counted by [`PushHub::flush`].
    fn spawn_tracked<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let guard = InFlight::new(Arc::clone(&self.inner));
        tokio::spawn(async move {
            fut.await;
            drop(guard);
        });
    }

    /// Waits until every provider delivery started so far has finished (retries
    /// included). For graceful shutdown (bound it with a timeout) and for tests.
    pub async fn flush(&self) {
        loop {
            let drained = self.inner.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.inner.inflight.load(Ordering::SeqCst) == 0 {
                return;
            }
            drained.await;
        }
    }

    // --- provider tokens -----------------------------------------------------------

    /// Stores the device's token at `provider` (replacing its previous one there;
    /// a token moves with the app install to whichever device registers it last).
    /// Baidu channels are stored but not delivered to.
    pub async fn register_token(
        &self,
        account: &str,
        device: &str,
        provider: Provider,
        token: &str,
    ) -> Result<(), PushError> {
        check_token(provider, token)?;
        self.inner
            .store
            .put_push_token(account, device, provider.as_str(), token, now_ms())
            .await?;
        Ok(())
    }

    /// Forgets the device's provider tokens (call on logout, so a logged-out phone is
    /// not woken for calls). Returns how many.
    pub async fn unregister_device(&self, account: &str, device: &str) -> Result<u64, PushError> {
        Ok(self
            .inner
            .store
            .delete_device_tokens(account, device)
            .await?)
    }

    // --- retention ---------------------------------------------------------------

    /// Removes events (delivered or not) and delivery records older than
    /// `older_than`; returns how many events. A client resuming from before them is
    /// told `gap`.
    pub async fn purge(&self, older_than: Duration) -> Result<u64, PushError> {
        let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .inner
            .store
            .purge_events(now_ms().saturating_sub(age))
            .await?)
    }

    /// Applies `[push] retention_s` now and then every [`HubOptions::purge_every`]
    /// until the task is aborted. A failure is logged and retried at the next tick.
    pub fn spawn_purger(&self) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(hub.inner.options.purge_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match hub.purge(hub.inner.retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "push queue retention"),
                    Err(e) => tracing::warn!(error = %e, "push queue retention failed"),
                }
            }
        })
    }
}

/// An open poll; closing it (also by dropping the poll's future) removes the device's
/// slot unless a newer poll took it over.
struct OpenPoll<'a, S> {
    inner: &'a Inner<S>,
    key: String,
    slot: Arc<Slot>,
    gen: u64,
}

impl<S> Drop for OpenPoll<'_, S> {
    fn drop(&mut self) {
        let mut slots = lock(&self.inner.slots);
        if self.slot.gen.load(Ordering::SeqCst) == self.gen
            && slots
                .get(&self.key)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
            slots.remove(&self.key);
        }
    }
}

/// Counts a running delivery task; the count drops even if the task panics.
struct InFlight<S> {
    inner: Arc<Inner<S>>,
}

impl<S> InFlight<S> {
    fn new(inner: Arc<Inner<S>>) -> InFlight<S> {
        inner.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight { inner }
    }
}

impl<S> Drop for InFlight<S> {
    fn drop(&mut self) {
        if self.inner.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.drained.notify_waiters();
        }
    }
}

// ---------------------------------------------------------------------------------
// Provider delivery
// ---------------------------------------------------------------------------------

/// Pushes one queued event to each of the device's tokens at a configured provider,
/// one after the other (a device has at most one token per provider).
async fn push_to_providers<S: Store>(
    inner: Arc<Inner<S>>,
    account: String,
    device: String,
    seq: i64,
    event: Value,
) {
    let tokens = match inner.store.push_tokens(&account, &device).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%account, %device, seq, error = %e, "push tokens unreadable");
            return;
        }
    };
    for t in tokens {
        let target = Target {
            account: &account,
            device: &device,
            seq,
            token: &t.token,
        };
        match Provider::parse(&t.provider) {
            Some(Provider::Apns) => {
                let Some(client) = &inner.apns else { continue };
                // The badge: events waiting for the device, this one included (it
                // may already be delivered to the poll by now: never below 1).
                let badge = inner
                    .store
                    .count_pending_events(&account, &device)
                    .await
                    .unwrap_or(1)
                    .max(1);
                let Some(payload) = apns::payload(&event, badge) else {
                    continue;
                };
                deliver(&inner, Provider::Apns, &target, || {
                    client.send(&t.token, &payload)
                })
                .await;
            }
            Some(Provider::Fcm) => {
                let Some(client) = &inner.fcm else { continue };
                let Some(message) = fcm::message(&t.token, &event) else {
                    continue;
                };
                deliver(&inner, Provider::Fcm, &target, || client.send(&message)).await;
            }
            Some(Provider::Baidu) | None => {}
        }
    }
}

/// Who one delivery is for.
struct Target<'a> {
    account: &'a str,
    device: &'a str,
    seq: i64,
    token: &'a str,
}

/// Sends with retries per [`RetryPolicy`], recording every attempt; forgets the token
/// when the provider says it is dead.
async fn deliver<S, F, Fut>(inner: &Inner<S>, provider: Provider, target: &Target<'_>, mut send: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = SendOutcome>,
{
    let policy = inner.options.retry;
    let attempts = policy.attempts.max(1);
    for attempt in 1..=attempts {
        let outcome = send().await;
        let (status, http_status, reason, done) = match outcome {
            SendOutcome::Delivered { http_status } => ("ok", Some(http_status), None, true),
            SendOutcome::DeadToken {
                http_status,
                reason,
            } => {
                if let Err(e) = inner
                    .store
                    .delete_push_token(provider.as_str(), target.token)
                    .await
                {
                    tracing::warn!(error = %e, "could not forget a dead push token");
                }
                ("dropped", http_status, Some(reason), true)
            }
            SendOutcome::Rejected {
                http_status,
                reason,
            } => ("rejected", http_status, Some(reason), true),
            SendOutcome::Retry {
                http_status,
                reason,
            } => {
                let last = attempt == attempts;
                let status = if last { "failed" } else { "retry" };
                (status, http_status, Some(reason), last)
            }
        };
        if status != "ok" {
            tracing::info!(
                account = %target.account, device = %target.device, seq = target.seq,
                %provider, attempt, status, http_status, reason = reason.as_deref().unwrap_or(""),
                "push delivery"
            );
        }
        let record = NewPushDelivery {
            account: target.account.to_owned(),
            device: target.device.to_owned(),
            provider: provider.as_str().to_owned(),
            seq: target.seq,
            attempt: i64::from(attempt),
            status: status.to_owned(),
            http_status: http_status.map(i64::from),
            reason,
            created_ms: now_ms(),
        };
        if let Err(e) = inner.store.record_push_delivery(&record).await {
            tracing::warn!(error = %e, "could not record a push delivery");
        }
        if done {
            return;
        }
        tokio::time::sleep(policy.delay(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_rules() {
        let c = |last_issued, purged_through| ClaimedEvents {
            events: Vec::new(),
            last_issued,
            purged_through,
        };
        assert!(!gap_of(None, &c(10, 5)));
        assert!(!gap_of(Some(5), &c(10, 5)), "saw the last purged one");
        assert!(gap_of(Some(4), &c(10, 5)));
        assert!(!gap_of(Some(10), &c(10, 0)));
        assert!(gap_of(Some(11), &c(10, 0)), "not a number of this queue");
        assert!(!gap_of(Some(0), &c(0, 0)));
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        let within = |d: Duration, base: u64| {
            d >= Duration::from_millis(base) && d <= Duration::from_millis(base * 5 / 4)
        };
        assert!(within(p.delay(1), 100));
        assert!(within(p.delay(2), 200));
        assert!(within(p.delay(3), 300));
        assert!(within(p.delay(30), 300));
    }

    #[test]
    fn tokens_are_checked() {
        assert!(check_token(Provider::Apns, "00ffAB").is_ok());
        assert!(check_token(Provider::Apns, "00ff/../x").is_err());
        assert!(check_token(Provider::Apns, "").is_err());
        assert!(check_token(Provider::Fcm, "abc:APA91b-_x").is_ok());
        assert!(check_token(Provider::Fcm, "a b").is_err());
        assert!(check_token(Provider::Baidu, &"x".repeat(5000)).is_err());
    }

    #[test]
    fn cloud_device_ids_split() {
        assert_eq!(split_cloud_device_id("abcd__0123"), Some(("abcd", "0123")));
        assert_eq!(split_cloud_device_id("abcd"), None);
        assert_eq!(split_cloud_device_id("__x"), None);
    }

    #[test]
    fn seq_is_added_to_the_event() {
        let e = PushEvent {
            seq: 7,
            account: "a".into(),
            device: "d".into(),
            event: serde_json::json!({"event": "x"}),
            created_ms: 0,
            delivered_ms: None,
        };
        assert_eq!(with_seq(e), serde_json::json!({"event": "x", "seq": 7}));
    }
}
