//! The listeners' limits against clients that never finish, on real loopback sockets in
//! front of a real host (simulator, link, default components): the header-read timeout
//! closes half-sent requests, silent sockets and idle keep-alive connections; at the
//! stream and connection caps `/healthz` and `/readyz` still answer; one user cannot take
//! every stream; a client that stops reading is cut by the write-stall timeout; an open
//! stream is not cut by the header timeout.

use std::net::SocketAddr;
use std::time::Duration;

use gateway_host::config::{Config, Secret};
use gateway_host::link::{LinkConfig, LinkState, LinkToken};
use gateway_host::server::{Host, serve_host_on};
use gateway_sim::{SimConfig, SimHandle, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TOKEN: &str = "listener-limits-token";
/// Generous bound for anything that should happen "soon" (the machine may be loaded).
const T: Duration = Duration::from_secs(20);

struct Running {
    public: SocketAddr,
    admin: SocketAddr,
    sim: SimHandle,
    hub: gateway_host::sse::StreamHub,
    auth: gateway_host::auth::Authenticator,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn token(&self, sub: &str) -> String {
        self.auth
            .mint(sub, vec!["*".into()], vec![], Duration::from_secs(600))
            .expect("mint")
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(T, self.task).await???;
        self.sim.shutdown().await;
        Ok(())
    }
}

/// A host served by `serve_host_on` (the production listeners) with `tweak` applied.
async fn start(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Running> {
    let sim = Simulator::start(SimConfig::new(TOKEN)).await?;
    let mut config = Config::load(None)?;
    config.jwt_secret = Some(Secret::new("listener-limits-secret-of-32-bytes!"));
    config.components_dir = None;
    tweak(&mut config);
    let host = Host::start(&config, LinkConfig::new(sim.url(), LinkToken::new(TOKEN)))?;
    let mut state = host.link.watch_state();
    tokio::time::timeout(T, state.wait_for(|s| *s == LinkState::Connected)).await??;
    let public = TcpListener::bind("127.0.0.1:0").await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let (public_addr, admin_addr) = (public.local_addr()?, admin.local_addr()?);
    let (hub, auth) = (host.hub.clone(), host.auth.clone());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        serve_host_on(host, &config, public, admin, async move {
            let _ = stopped.await;
        })
        .await
    });
    Ok(Running {
        public: public_addr,
        admin: admin_addr,
        sim,
        hub,
        auth,
        stop: Some(stop),
        task,
    })
}

/// `GET path` on a fresh connection; the status code, or `None` if the connection was
/// closed without an answer.
async fn status(addr: SocketAddr, path: &str, auth: Option<&str>) -> anyhow::Result<Option<u16>> {
    let mut tcp = TcpStream::connect(addr).await?;
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        // A reset by the peer counts as closed.
        let n: usize = tokio::time::timeout(T, tcp.read(&mut buf))
            .await?
            .unwrap_or_default();
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    Ok(line.split(' ').nth(1).and_then(|s| s.parse().ok()))
}

/// Waits until the peer closes `tcp` (EOF or reset), at most `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. a 408 answer before the close
        }
    }
}

/// Opens a stream for `token` and waits for its `200`; keeps the socket.
async fn open_stream(addr: SocketAddr, token: &str) -> anyhow::Result<(u16, TcpStream)> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(
        format!("GET /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(T, tcp.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "closed before the status line");
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code = line.split(' ').nth(1).and_then(|s| s.parse().ok());
    Ok((code.unwrap_or(0), tcp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_silent_sockets_and_idle_connections_are_closed() -> anyhow::Result<()> {
    let h = start(|c| c.listener.header_read_timeout_ms = 500).await?;
    let mut half_sent = Vec::new();
    for _ in 0..200 {
        let mut tcp = TcpStream::connect(h.public).await?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await?;
        half_sent.push(tcp);
    }
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(h.public).await?);
    }
    // A finished request, then an idle keep-alive connection.
    let mut idle = TcpStream::connect(h.public).await?;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(T, idle.read(&mut buf)).await??;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    for (i, tcp) in half_sent.iter_mut().chain(silent.iter_mut()).enumerate() {
        assert!(closed_within(tcp, T).await, "connection {i} still open");
    }
    assert!(
        closed_within(&mut idle, T).await,
        "idle keep-alive still open"
    );
    // The listener still serves.
    assert_eq!(status(h.public, "/healthz", None).await?, Some(200));
    h.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_stream_cap_health_still_answers_and_one_user_cannot_take_every_stream()
-> anyhow::Result<()> {
    let h = start(|c| {
        c.listener.max_connections = 24;
        c.stream.max_clients = 8;
        c.stream.max_streams_per_user = 3;
    })
    .await?;
    // One user: 3 streams, the 4th is refused with 429; others are unaffected.
    let mut streams = Vec::new();
    let alice = h.token("alice");
    for _ in 0..3 {
        let (code, tcp) = open_stream(h.public, &alice).await?;
        assert_eq!(code, 200);
        streams.push(tcp);
    }
    assert_eq!(open_stream(h.public, &alice).await?.0, 429);
    for i in 0..5 {
        let (code, tcp) = open_stream(h.public, &h.token(&format!("user{i}"))).await?;
        assert_eq!(code, 200);
        streams.push(tcp);
    }
    assert_eq!(h.hub.client_count(), 8);
    // The stream cap: 503, and health still answers on the public listener.
    assert_eq!(open_stream(h.public, &h.token("late")).await?.0, 503);
    assert_eq!(status(h.public, "/healthz", None).await?, Some(200));
    assert_eq!(status(h.public, "/readyz", None).await?, Some(200));
    drop(streams);
    h.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_new_connections_are_refused_and_health_answers_on_admin()
-> anyhow::Result<()> {
    let h = start(|c| {
        c.listener.max_connections = 10;
        c.listener.header_read_timeout_ms = 60_000;
    })
    .await?;
    // Silent sockets take every slot (accepted in order, before the probes below).
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(h.public).await?);
    }
    // Over the cap: refused at once (503 or closed), never left hanging.
    for _ in 0..5 {
        let answer = status(h.public, "/healthz", None).await?;
        assert!(
            matches!(answer, Some(503) | None),
            "over the cap: {answer:?}"
        );
    }
    // Health stays observable on the admin listener.
    assert_eq!(status(h.admin, "/healthz", None).await?, Some(200));
    assert_eq!(status(h.admin, "/readyz", None).await?, Some(200));
    // Freeing slots lets the public listener answer again.
    drop(silent);
    let deadline = tokio::time::Instant::now() + T;
    while status(h.public, "/healthz", None).await? != Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots never given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_by_the_write_stall_timeout() -> anyhow::Result<()> {
    let h = start(|c| {
        c.listener.write_stall_timeout_ms = 300;
        // A queue the test never fills: only the stall timeout can drop this client.
        c.stream.client_queue = 1_000_000;
    })
    .await?;
    let token = h.token("stalled");
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut stalled = socket.connect(h.public).await?;
    stalled
        .write_all(
            format!("GET /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let deadline = tokio::time::Instant::now() + T;
    while h.hub.client_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Emit until the client's socket buffers are full and the stall timeout cuts it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut batches = 0;
    while h.hub.client_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline && batches < 400,
            "the stalled client is still connected after {batches} batches"
        );
        h.sim.control().emit(500);
        batches += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.hub.lagged_total(),
        0,
        "cut by the stall timeout, not the queue"
    );
    assert!(
        closed_within(&mut stalled, T).await,
        "the stalled connection is closed"
    );
    drop(stalled);
    h.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_outlives_the_header_timeout() -> anyhow::Result<()> {
    let h = start(|c| {
        c.listener.header_read_timeout_ms = 200;
        c.stream.heartbeat_ms = 100;
    })
    .await?;
    let (code, mut tcp) = open_stream(h.public, &h.token("long")).await?;
    assert_eq!(code, 200);
    // Ten heartbeats span at least 1 s, five times the header timeout.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches(": heartbeat").count() < 10 {
        let n = tokio::time::timeout(T, tcp.read(&mut buf)).await??;
        assert!(n > 0, "the stream was closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(h.hub.client_count(), 1);
    drop(tcp);
    h.stop().await
}
