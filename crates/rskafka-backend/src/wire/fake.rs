//! The wire side of the tests' fake brokers: read one request frame, write one
//! response frame, and answer ApiVersions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable, HeaderVersion};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The next request's header and body; `None` once the client has hung up.
pub(crate) async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Option<(RequestHeader, Bytes)> {
    let len = stream.read_i32().await.ok()?;
    let mut frame = vec![0_u8; usize::try_from(len).unwrap()];
    stream.read_exact(&mut frame).await.ok()?;
    let mut buf = Bytes::from(frame);
    let header = decode_request_header_from_buffer(&mut buf).unwrap();
    Some((header, buf))
}

/// Appends the response frame of `resp`, at version `v`, to `out`.
pub(crate) fn respond<R: Encodable + HeaderVersion>(
    out: &mut BytesMut,
    correlation: i32,
    resp: &R,
    v: i16,
) {
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut body, R::header_version(v))
        .unwrap();
    resp.encode(&mut body, v).unwrap();
    out.put_i32(i32::try_from(body.len()).unwrap());
    out.extend_from_slice(&body);
}

/// An ApiVersions answer serving `served`: (API, oldest, newest version).
pub(crate) fn api_versions(served: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        served
            .iter()
            .map(|&(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}
