//! `--cap-fetch-version V`: a loopback proxy in front of the Tansu broker the bench
//! starts, which lowers the highest Fetch version the broker advertises in its
//! ApiVersions responses to `V`, and forwards every other byte as it is.
//!
//! Why: Tansu 0.6 writes the FetchResponse's top-level tagged field 0 (NodeEndpoints,
//! defined from v16 on) into every flexible Fetch response (`node_endpoints(Some([]))`
//! in tansu-storage's `service/fetch.rs`), and kafka-protocol, which the rskafka
//! backend decodes Fetch with, refuses a tag that its version does not define ("Tag 0
//! is not valid for version 12"), so the rskafka manager never reads a record from
//! Tansu. Fetch v11 and below are not flexible (no tagged fields). Tansu advertises
//! the proxy's address, so every connection a client opens (after Metadata too) goes
//! through it; every consumer of a run goes through it alike.

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::BoxResult;

/// Kafka's API key of Fetch.
const FETCH: i16 = 1;
/// Kafka's API key of ApiVersions.
const API_VERSIONS: i16 = 18;

/// The proxy; it stops when dropped (with its runtime).
pub(crate) struct FetchCapProxy {
    /// `host:port` the clients bootstrap from (and Tansu advertises).
    pub(crate) address: String,
    _runtime: Runtime,
}

/// A loopback listener for the proxy, bound now so that its port can be given to
/// Tansu as the advertised one before the proxy runs.
pub(crate) fn bind() -> BoxResult<StdListener> {
    let listener = StdListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `listener`, forwarding to `upstream` with Fetch capped at `cap`.
pub(crate) fn start(listener: StdListener, upstream: &str, cap: i16) -> BoxResult<FetchCapProxy> {
    let address = listener.local_addr()?.to_string();
    // Threads of its own: the bench's thread waits on a child process meanwhile.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fetch-cap-proxy")
        .enable_all()
        .build()?;
    let upstream = upstream.to_owned();
    let listener = {
        let _entered = runtime.enter();
        TcpListener::from_std(listener)?
    };
    runtime.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                match serve(client, &upstream, cap).await {
                    // A child exits without closing its connections first.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                        ) => {}
                    Err(e) => eprintln!("fetch-cap proxy: a connection ended: {e}"),
                    Ok(()) => {}
                }
            });
        }
    });
    Ok(FetchCapProxy {
        address,
        _runtime: runtime,
    })
}

/// One client connection: requests up as they are, responses down with ApiVersions
/// answers capped.
async fn serve(client: TcpStream, upstream: &str, cap: i16) -> std::io::Result<()> {
    let broker = TcpStream::connect(upstream).await?;
    // Clients send small requests and wait for each answer: no Nagle delays here.
    client.set_nodelay(true)?;
    broker.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (broker_read, broker_write) = broker.into_split();
    // Correlation id -> version of each ApiVersions request in flight.
    let pending = Arc::new(Mutex::new(HashMap::new()));
    let up = requests(client_read, broker_write, Arc::clone(&pending));
    let down = responses(broker_read, client_write, pending, cap);
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

/// One frame: its 4-byte length and its body; `None` at a clean end of stream.
async fn read_frame(from: &mut OwnedReadHalf) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0_u8; 4];
    match from.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = usize::try_from(i32::from_be_bytes(len).max(0)).unwrap_or(0);
    let mut frame = vec![0_u8; 4 + n];
    frame[..4].copy_from_slice(&len);
    from.read_exact(&mut frame[4..]).await?;
    Ok(Some(frame))
}

async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    pending: Arc<Mutex<HashMap<i32, i16>>>,
) -> std::io::Result<()> {
    while let Some(frame) = read_frame(&mut from).await? {
        // Request header: api_key, api_version, correlation_id.
        if let (Some(key), Some(version), Some(id)) =
            (i16_at(&frame, 4), i16_at(&frame, 6), i32_at(&frame, 8))
        {
            if key == API_VERSIONS {
                if let Ok(mut p) = pending.lock() {
                    p.insert(id, version);
                }
            }
        }
        to.write_all(&frame).await?;
    }
    to.shutdown().await
}

async fn responses(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    pending: Arc<Mutex<HashMap<i32, i16>>>,
    cap: i16,
) -> std::io::Result<()> {
    while let Some(mut frame) = read_frame(&mut from).await? {
        let version =
            i32_at(&frame, 4).and_then(|id| pending.lock().ok().and_then(|mut p| p.remove(&id)));
        if let Some(version) = version {
            // The ApiVersions response header is always v0: the body follows the id.
            cap_fetch(&mut frame[8..], version, cap);
        }
        to.write_all(&frame).await?;
    }
    to.shutdown().await
}

fn i16_at(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An unsigned varint at `*at`, moving past it.
fn uvarint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Lowers Fetch's max version in an ApiVersions response body of `version` to `cap`;
/// leaves a body it cannot read as it is.
fn cap_fetch(body: &mut [u8], version: i16, cap: i16) -> Option<()> {
    let flexible = version >= 3;
    let mut at = 2; // error_code
    let count = if flexible {
        usize::try_from(uvarint(body, &mut at)?.checked_sub(1)?).ok()?
    } else {
        let n = usize::try_from(i32_at(body, at)?).ok()?;
        at += 4;
        n
    };
    for _ in 0..count {
        let key = i16_at(body, at)?;
        let max_at = at + 4;
        let max = i16_at(body, max_at)?;
        if key == FETCH && max > cap {
            body.get_mut(max_at..max_at + 2)?
                .copy_from_slice(&cap.to_be_bytes());
        }
        at += 6;
        if flexible {
            // The entry's tagged fields: tag, size, bytes.
            for _ in 0..uvarint(body, &mut at)? {
                uvarint(body, &mut at)?;
                let size = usize::try_from(uvarint(body, &mut at)?).ok()?;
                at += size;
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fetch_in_a_flexible_response() {
        // error 0; 2 entries; Produce 0..11, Fetch 4..16, each without tags; then
        // throttle time and the body's tags.
        let mut body = vec![0, 0, 3, 0, 0, 0, 0, 0, 11, 0, 0, 1, 0, 4, 0, 16, 0];
        body.extend([0, 0, 0, 0, 0]);
        cap_fetch(&mut body, 3, 11);
        assert_eq!(&body[14..16], &[0, 11]);
        assert_eq!(&body[7..9], &[0, 11], "Produce's max is left alone");
    }

    #[test]
    fn caps_fetch_in_a_v0_response() {
        let mut body = vec![0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 12];
        cap_fetch(&mut body, 0, 11);
        assert_eq!(&body[10..12], &[0, 11]);
    }
}
