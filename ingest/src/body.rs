//! Reading request bodies within limits: declared length, streamed length, gzip (by header or
//! magic bytes) with a cap on the decompressed size so a zip bomb costs us nothing.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::IngestError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Checks `Content-Type`: JSON or text/plain (sendBeacon); absent is accepted.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), IngestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let text = value.to_str().map_err(|_| IngestError::UnsupportedMediaType("<non-ascii>".into()))?;
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "text/plain" | "" => Ok(()),
        _ => Err(IngestError::UnsupportedMediaType(essence)),
    }
}

/// Reads the whole body within `timeout`, refusing more than `limit` bytes before or after
/// decompression.
pub async fn read_body(headers: &HeaderMap, body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, IngestError> {
    if let Some(length) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
        if length > limit {
            return Err(IngestError::PayloadTooLarge { limit });
        }
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(encoding.as_str(), "" | "identity" | "gzip" | "x-gzip") {
        return Err(IngestError::UnsupportedEncoding(encoding));
    }
    let collect = Limited::new(body, limit).collect();
    let collected = tokio::time::timeout(timeout, collect).await.map_err(|_| IngestError::BodyTimeout(timeout))?.map_err(|err| {
        if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            IngestError::PayloadTooLarge { limit }
        } else {
            IngestError::BodyRead(err.to_string())
        }
    })?;
    let bytes = collected.to_bytes();
    if encoding.contains("gzip") || bytes.starts_with(&GZIP_MAGIC) {
        return gunzip(&bytes, limit);
    }
    Ok(bytes)
}

/// Decompresses gzip, failing as soon as the output would exceed `limit`.
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let decoder = flate2::read::MultiGzDecoder::new(bytes);
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    let read = decoder.take(limit as u64 + 1).read_to_end(&mut out).map_err(|_| IngestError::MalformedGzip)?;
    if read > limit {
        return Err(IngestError::PayloadTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        // Best compression: how small a bomb gets must not depend on which deflate backend
        // flate2 is built with (the workspace's feature set can change it).
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_round_trip_and_bomb_refusal() {
        let data = b"{\"v\":1}";
        assert_eq!(&gunzip(&gzip(data), 1024).unwrap()[..], data);
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        assert!(matches!(gunzip(&bomb, 512 * 1024), Err(IngestError::PayloadTooLarge { .. })));
        assert!(matches!(gunzip(&[0x1f, 0x8b, 0, 1, 2], 1024), Err(IngestError::MalformedGzip)));
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_ok());
        headers.insert(header::CONTENT_TYPE, "text/plain;charset=UTF-8".parse().unwrap());
        assert!(check_content_type(&headers).is_ok());
        headers.insert(header::CONTENT_TYPE, "application/JSON".parse().unwrap());
        assert!(check_content_type(&headers).is_ok());
        headers.insert(header::CONTENT_TYPE, "application/xml".parse().unwrap());
        assert!(matches!(check_content_type(&headers), Err(IngestError::UnsupportedMediaType(_))));
    }
}
