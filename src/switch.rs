//! Start-up, the SIP event loop and graceful shutdown.
//!
//! One task owns the SIP endpoint and the B2BUA: every SIP input, timer and
//! command passes through it, so a call's state has exactly one owner and
//! the messages of a transaction leave in order. HTTP runs on the same
//! runtime and reads only shared metrics (and, later, call snapshots).

use crate::accounts::{Accounts, AccountsConfig};
use crate::b2bua::{B2bua, Command, InboundEnv};
use crate::cdr::{self, CdrSink};
use crate::config::{Config, Router};
use crate::http::{self, HttpState};
use crate::metrics::{Direction, HistogramSnapshot, Metrics};
use crate::push::PushHub;
use crate::registry::Registry;
use crate::service::{self, Service, ServiceConfig};
use crate::store::{self, Store};
use sip::driver::{TransportConfig, TransportEvent, Transports};
use sip::endpoint::{Endpoint, EndpointConfig, Observer};
use sip::transaction::TimerConfig;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Errors that stop the switch from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen for SIP on {addr}: {reason}")]
    SipBind { addr: SocketAddr, reason: String },
    #[error("cannot listen for HTTP on {addr}: {source}")]
    HttpBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the media relay: {0}")]
    Media(#[from] media::driver::DriverError),
    #[error("cannot open the store {url}: {source}")]
    Store {
        url: String,
        source: store::StoreError,
    },
    #[error("accounts: {0}")]
    Accounts(#[from] crate::accounts::AccountError),
    #[error("push: {0}")]
    Push(#[from] crate::push::PushError),
}

/// The addresses actually bound (port 0 in the config becomes a real port).
#[derive(Clone, Debug)]
pub struct Listening {
    pub sip: SocketAddr,
    pub http: SocketAddr,
}

struct MetricsObserver(Arc<Metrics>);

impl Observer for MetricsObserver {
    fn request(&self, outbound: bool, method: &str) {
        if outbound {
            self.0.sip_request_out(method);
        } else {
            self.0.sip_request_in(method);
        }
    }
    fn response(&self, outbound: bool, cseq_method: &str, status: u16) {
        let dir = if outbound {
            Direction::Out
        } else {
            Direction::In
        };
        self.0.sip_response(dir, cseq_method, status);
    }
    fn retransmission(&self, outbound: bool) {
        self.0.sip_retransmission(if outbound {
            Direction::Out
        } else {
            Direction::In
        });
    }
    fn parse_error(&self, reason: &'static str) {
        self.0.sip_parse_error(reason);
    }
}

/// Runs the switch until `shutdown` resolves, then hangs up every call and
/// returns. `ready` receives the bound addresses once every listener is up.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: Option<oneshot::Sender<Listening>>,
) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    // The store first: a switch that cannot keep call records takes no calls.
    let store = store::open(&config.store.url)
        .await
        .map_err(|source| StartError::Store {
            url: config.store.url.clone(),
            source,
        })?;
    let node = config.store.node.clone();
    // Close what a previous process of this node left live, before our own
    // heartbeat overwrites the time it was last seen.
    store::recover_node(&store, &node, store::now_ms())
        .await
        .map_err(|source| StartError::Store {
            url: config.store.url.clone(),
            source,
        })?;
    let heartbeat = store::spawn_heartbeat(store.clone(), node.clone(), Duration::from_secs(5));
    let accounts = Accounts::new(
        store.clone(),
        AccountsConfig {
            sms_url: config.sms.url.clone(),
            ..AccountsConfig::default()
        },
    )?;
    let push = PushHub::new(store.clone(), &config.push)?;
    let purger = push.spawn_purger();
    let (cdr_sink, cdr_rx) = CdrSink::new();
    let cdr_writer = cdr::spawn_writer(store.clone(), cdr_rx);
    let transports_cfg = TransportConfig {
        listen: config.sip.listen,
        max_message_size: config.sip.max_message_size,
        tcp_idle_timeout: config.sip.tcp_idle_timeout(),
        max_tcp_connections: 4096,
        tcp_connect_timeout: Duration::from_secs(5),
    };
    let (transports, mut transport_rx) =
        Transports::bind(transports_cfg)
            .await
            .map_err(|e| StartError::SipBind {
                addr: config.sip.listen,
                reason: e.to_string(),
            })?;
    let sip_addr = transports.local_addr();
    println!("sip udp {sip_addr}");
    println!("sip tcp {sip_addr}");

    let http_listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::HttpBind {
            addr: config.http.listen,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| StartError::HttpBind {
            addr: config.http.listen,
            source,
        })?;
    println!("http {http_addr}");

    // Trunk addresses are resolved once at start-up.
    let router = Router::resolve(&config.trunks).await?;
    let mut trunk_addrs = Vec::new();
    for t in router.trunks() {
        trunk_addrs.push(t.address.resolve().await?);
    }

    let public_host = config.sip.public_addr.clone().unwrap_or_else(|| {
        if sip_addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            sip_addr.ip().to_string()
        }
    });
    let media_ip: IpAddr = config
        .media
        .public_ip
        .or_else(|| (!config.media.bind_ip.is_unspecified()).then_some(config.media.bind_ip))
        .or_else(|| public_host.parse().ok())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));

    let mut endpoint = Endpoint::new(
        EndpointConfig {
            timers: TimerConfig {
                t1: config.sip.t1(),
                t2: config.sip.t2(),
                t4: config.sip.t4(),
            },
            public_host: public_host.clone(),
            public_port: sip_addr.port(),
            user_agent: format!("softswitch/{}", env!("CARGO_PKG_VERSION")),
        },
        Arc::new(MetricsObserver(Arc::clone(&metrics))),
    );
    let media = Arc::new(media::driver::MediaDriver::start(
        media::driver::DriverConfig::new(
            config.media.bind_ip,
            config.media.port_min,
            config.media.port_max,
        ),
    )?);
    println!(
        "media udp {}:{}-{}",
        config.media.bind_ip, config.media.port_min, config.media.port_max
    );
    metrics.media_ports_free.set(media.ports_available() as i64);
    let latency_source = Arc::downgrade(&media);
    metrics
        .rtp_relay_latency_seconds
        .set_source(Arc::new(move || match latency_source.upgrade() {
            Some(media) => {
                let snap = media.latency();
                HistogramSnapshot {
                    bounds: snap.bounds_seconds.to_vec(),
                    cumulative: snap.cumulative,
                    sum: snap.sum_seconds,
                    count: snap.count,
                }
            }
            None => HistogramSnapshot::default(),
        }));
    let mut media_events = media.take_events();
    let (command_tx, mut command_rx) = mpsc::channel::<Command>(1024);
    let registry = Arc::new(Registry::default());
    let refresher = service::spawn_stats_refresher(
        Arc::clone(&registry),
        Arc::downgrade(&media),
        command_tx.clone(),
        config.calls.media_timeout(),
        Duration::from_millis(250),
    );
    let service = Arc::new(Service::new(
        accounts,
        store.clone(),
        push.clone(),
        Arc::clone(&registry),
        command_tx,
        cdr_sink.clone(),
        ServiceConfig {
            node: node.clone(),
            app_octet_aligned: config.calls.app_payload_mode_octet_aligned(),
            max_calls_per_account: config.calls.max_calls_per_account,
        },
    ));
    let mut b2bua = B2bua::new(
        Arc::clone(&media),
        router,
        trunk_addrs,
        media_ip,
        public_host,
        Arc::clone(&metrics),
        cdr_sink,
        node,
        Instant::now().into_std(),
    )
    .with_inbound(InboundEnv {
        store: store.clone(),
        notifier: Arc::new(service::HubNotifier::new(push.clone())),
        registry: Arc::clone(&registry),
        ring_timeout: config.calls.ring_timeout(),
        app_octet_aligned: config.calls.app_payload_mode_octet_aligned(),
        max_calls_per_account: config.calls.max_calls_per_account,
    });

    let mut media_opened = b2bua.take_media_opened();

    let sip_up = Arc::new(AtomicBool::new(true));
    let health_flag = Arc::clone(&sip_up);
    // /healthz answers from flags: the store is pinged in the background so
    // a health probe never waits on the database.
    let store_up = Arc::new(AtomicBool::new(true));
    let store_flag = Arc::clone(&store_up);
    let store_probe = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let up = matches!(
                    tokio::time::timeout(Duration::from_secs(3), store.ping()).await,
                    Ok(Ok(()))
                );
                if !up {
                    tracing::error!("store does not answer");
                }
                store_up.store(up, Ordering::Relaxed);
            }
        })
    };
    let state = HttpState {
        metrics: Arc::clone(&metrics),
        health: Arc::new(move || {
            if !store_flag.load(Ordering::Relaxed) {
                Err("store unreachable".to_owned())
            } else if health_flag.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("sip stopped".to_owned())
            }
        }),
    };
    let (http_stop_tx, http_stop_rx) = oneshot::channel::<()>();
    let mut api_cfg = api::ApiConfig::default();
    // The long poll's idle time is the switch's; the HTTP layer only needs
    // to let such requests live that long.
    api_cfg.long_poll_timeout = config.push.long_poll_timeout();
    api_cfg.openapi_extra = Some(http::operator_openapi());
    let api_routes = api::router(service, api_cfg);
    let app = http::count_requests(
        http::with_fallbacks(http::operator_routes(state).merge(api_routes)),
        Arc::clone(&metrics),
    );
    let http_task = tokio::spawn(http::serve(http_listener, app, async move {
        let _ = http_stop_rx.await;
    }));

    if let Some(ready) = ready {
        let _ = ready.send(Listening {
            sip: sip_addr,
            http: http_addr,
        });
    }

    // The SIP loop runs as a task of the runtime, not on the thread that
    // called `run`: a datagram's receive task then wakes it on the same
    // worker (no thread hand-off per message).
    let loop_transports = transports.clone();
    let loop_metrics = Arc::clone(&metrics);
    let sip_loop = async move {
        let transports = loop_transports;
        let metrics = loop_metrics;
        let mut shutdown = Box::pin(shutdown);
        let mut stopping: Option<Instant> = None;
        // One timer for the loop, moved only when the next deadline moves
        // (not a new timer-wheel entry per turn).
        let timer = tokio::time::sleep_until(Instant::now() + Duration::from_secs(3600));
        tokio::pin!(timer);
        loop {
            let now = Instant::now();
            let next = [endpoint.poll_timeout(), b2bua.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .map(Instant::from_std)
                .unwrap_or(now + Duration::from_secs(3600));
            if timer.deadline() != next {
                timer.as_mut().reset(next);
            }
            tokio::select! {
                biased;
                _ = &mut shutdown, if stopping.is_none() => {
                    tracing::info!("shutting down: hanging up {} calls", b2bua.active_calls());
                    stopping = Some(now);
                    b2bua.shutdown(&mut endpoint, now.into_std()).await;
                }
                // Before the wire: each is the next step of a call already
                // under way, and there are never more than INVITEs.
                Some(opened) = recv_opened(&mut media_opened) => {
                    b2bua.media_opened(&mut endpoint, opened, Instant::now().into_std());
                }
                ev = transport_rx.recv() => {
                    let now = Instant::now().into_std();
                    let Some(ev) = ev else { break };
                    handle_transport(&mut endpoint, ev, now);
                    // Whatever else is queued, in one go: the loop's own cost
                    // (select, gauges) is paid once per batch, not per message.
                    for _ in 1..TRANSPORT_BATCH {
                        match transport_rx.try_recv() {
                            Ok(ev) => handle_transport(&mut endpoint, ev, now),
                            Err(_) => break,
                        }
                    }
                }
                Some(cmd) = command_rx.recv() => {
                    b2bua.handle_command(&mut endpoint, cmd, Instant::now().into_std()).await;
                }
                Some(ev) = recv_media_event(&mut media_events) => {
                    b2bua.handle_media_event(&mut endpoint, ev, Instant::now().into_std());
                }
                () = &mut timer => {
                    let now = Instant::now().into_std();
                    endpoint.handle_timeout(now);
                    b2bua.handle_timeout(&mut endpoint, now).await;
                }
            }
            let now = Instant::now().into_std();
            // Timers due are served whatever woke the loop, so a busy wire can
            // never starve retransmissions and timeouts.
            if endpoint.poll_timeout().is_some_and(|at| at <= now) {
                endpoint.handle_timeout(now);
            }
            if b2bua.poll_timeout().is_some_and(|at| at <= now) {
                b2bua.handle_timeout(&mut endpoint, now).await;
            }
            while let Some(ev) = endpoint.poll_event() {
                b2bua.handle_event(&mut endpoint, ev, now).await;
            }
            while let Some(t) = endpoint.poll_transmit() {
                transports.send(t);
            }
            metrics
                .sip_transactions_active
                .set(endpoint.transaction_count() as i64);
            metrics
                .sip_dialogs_active
                .set(endpoint.dialog_count() as i64);
            if let Some(since) = stopping {
                // Calls are gone (BYE answered) or we waited long enough: the
                // contract is to exit within 10 s.
                if endpoint.dialog_count() == 0 || since.elapsed() > Duration::from_secs(8) {
                    break;
                }
            }
        }
        drop(b2bua);
    };
    if let Err(e) = tokio::spawn(sip_loop).await {
        tracing::error!(error = %e, "the SIP loop failed");
    }
    sip_up.store(false, Ordering::Relaxed);
    refresher.abort();
    let _ = refresher.await;
    transports.shutdown().await;
    // The relay's loops join their threads: do it off the async workers.
    if let Ok(media) = Arc::try_unwrap(media) {
        let _ = tokio::task::spawn_blocking(move || media.shutdown()).await;
    }
    let _ = http_stop_tx.send(());
    let _ = http_task.await;
    // Every record sink is gone with the HTTP router and the B2BUA: the
    // writer drains what is queued and stops.
    if tokio::time::timeout(Duration::from_secs(5), cdr_writer)
        .await
        .is_err()
    {
        tracing::error!("call records still queued at exit; they are closed at the next start");
    }
    // Provider deliveries in flight get a moment to finish.
    let _ = tokio::time::timeout(Duration::from_secs(2), push.flush()).await;
    purger.abort();
    store_probe.abort();
    heartbeat.abort();
    store.close().await;
    Ok(())
}

/// Transport events handled per turn of the SIP loop at most.
const TRANSPORT_BATCH: usize = 64;

fn handle_transport(endpoint: &mut Endpoint, ev: TransportEvent, now: std::time::Instant) {
    match ev {
        TransportEvent::Message(m) => endpoint.handle_received(m, now),
        TransportEvent::Error {
            transport,
            destination,
            error,
        } => {
            tracing::debug!(%destination, %error, "transport error");
            endpoint.handle_transport_error(transport, destination, now);
        }
    }
}

/// The next report of opened relay legs; pending forever without a stream.
async fn recv_opened(
    rx: &mut Option<mpsc::UnboundedReceiver<crate::b2bua::MediaOpened>>,
) -> Option<crate::b2bua::MediaOpened> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next relay event; pending forever when there is no event stream.
async fn recv_media_event(
    rx: &mut Option<mpsc::Receiver<media::driver::MediaEvent>>,
) -> Option<media::driver::MediaEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
