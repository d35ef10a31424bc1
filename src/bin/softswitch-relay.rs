//! `softswitch-relay`: our RTP relay ([`media::driver::MediaDriver`]) as a
//! process of its own, controlled over rtpengine's ng protocol, so
//! `softswitch-bench` drives it and rtpengine with the same client and
//! charges each its own CPU and memory. See `softswitch::bench::ng_relay`.

use std::error::Error;
use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use media::driver::{DriverConfig, MediaDriver};
use softswitch::bench::ng_relay::NgRelay;

#[derive(Parser, Debug)]
#[command(about = "The softswitch RTP relay behind an ng control socket (for benchmarks)")]
struct Args {
    /// UDP address of the ng control socket.
    #[arg(long, default_value = "127.0.0.1:2223")]
    listen_ng: SocketAddr,
    /// Address the media sockets bind to (and the SDPs name).
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    #[arg(long, default_value_t = 30000)]
    port_min: u16,
    #[arg(long, default_value_t = 39999)]
    port_max: u16,
    /// Media event loops; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    loops: usize,
}

fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SOFTSWITCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut cfg = DriverConfig::new(args.bind_ip, args.port_min, args.port_max);
    cfg.loops = args.loops;
    let driver = MediaDriver::start(cfg)?;
    let loops = driver.loop_count();
    // The control path is light: one thread for it, the loops have their own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut relay = NgRelay::new(driver);
    let served = rt.block_on(async {
        let sock = tokio::net::UdpSocket::bind(args.listen_ng).await?;
        // The benchmark waits for this line (and then pings).
        println!("ng udp {} loops {loops}", sock.local_addr()?);
        tokio::select! {
            r = relay.serve(&sock) => r,
            r = tokio::signal::ctrl_c() => r,
            r = terminated() => r,
        }
    });
    relay.shutdown();
    served?;
    Ok(())
}

/// SIGTERM, which is how the benchmark (and service managers) stop it.
async fn terminated() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    Ok(())
}
