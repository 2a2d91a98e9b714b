//! A client that stops reading is disconnected once its bounded queue fills, while a
//! reading client receives every event; the slow one costs the host at most its queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway_tests::host::start_host;
use gateway_tests::sse_client::get;
use gateway_tests::wait_until;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

const TOTAL: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_others_get_everything() -> anyhow::Result<()> {
    let h = start_host(|c| c.stream.client_queue = 256).await?;
    let auth = h.bearer(&["*"]);

    // The stalled client: a tiny receive window, one request, then never a read.
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut stalled = socket.connect(h.addr.parse()?).await?;
    stalled
        .write_all(
            format!("GET /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n")
                .as_bytes(),
        )
        .await?;

    let mut reader = get(&h.addr, "/api/stream", &[("Authorization", &auth)]).await?;
    assert_eq!(reader.status, 200);
    wait_until(Duration::from_secs(10), "both subscribed", || {
        h.host().hub.client_count() == 2
    })
    .await?;

    // The reading client, on its own task, checks every event arrives in order.
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let reading = tokio::spawn(async move {
        while counter.load(Ordering::Relaxed) < TOTAL {
            let (_, _, data) = reader
                .next_event(Duration::from_secs(20))
                .await?
                .expect("reader stays connected");
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            assert_eq!(
                data["upstreamSeq"].as_u64(),
                Some(n),
                "every event, in order"
            );
        }
        anyhow::Ok(())
    });

    // Enough traffic to fill the stalled connection's kernel buffers many times over,
    // in batches of 100 (less than the queue of 256), each sent once the reading client has
    // caught up: only the stalled client can fall behind.
    let mut emitted = 0;
    while emitted < TOTAL {
        h.sim.control().emit(100);
        emitted += 100;
        wait_until(Duration::from_secs(20), "reader keeps up", || {
            received.load(Ordering::Relaxed) >= emitted
        })
        .await?;
    }
    reading.await??;
    wait_until(Duration::from_secs(10), "stalled client dropped", || {
        h.host().hub.lagged_total() == 1 && h.host().hub.client_count() == 1
    })
    .await?;
    drop(stalled);
    Ok(())
}
