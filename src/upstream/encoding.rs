//! The IdP's response bodies, decompressed when the IdP used gzip or deflate and capped
//! after decoding, and the `Accept-Encoding` the sidecar may ask for.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use std::io::Read;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("body is over {0} bytes")]
    TooLarge(usize),
    #[error("cannot decode {encoding} body: {detail}")]
    Encoding { encoding: String, detail: String },
}

/// The body with any `Content-Encoding` undone, at most `max` bytes after decoding
/// (a gzip bomb stops at the cap).
pub fn decode_content(
    header: &ResponseHeader,
    body: Bytes,
    max: usize,
) -> Result<Bytes, BodyError> {
    let encoding = header
        .headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let reader: Box<dyn Read> = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(&body[..])),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        other => {
            return Err(BodyError::Encoding {
                encoding: other.to_owned(),
                detail: "unsupported content encoding".into(),
            });
        }
    };
    let mut out = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Encoding {
            encoding: encoding.clone(),
            detail: e.to_string(),
        })?;
    if out.len() > max {
        return Err(BodyError::TooLarge(max));
    }
    Ok(Bytes::from(out))
}

/// The `Accept-Encoding` the sidecar forwards: the client's, limited to the codings it
/// can decode itself, since it must read the IdP's answer to rewrite it.
pub fn decodable_accept_encoding(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|c| {
            let name = c
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            matches!(name.as_str(), "gzip" | "x-gzip" | "deflate" | "identity")
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_decoded_and_capped() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[b'a'; 10_000]).unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        let mut h = ResponseHeader::build(200, None).unwrap();
        h.insert_header("Content-Encoding", "gzip").unwrap();
        assert_eq!(
            decode_content(&h, gz.clone(), 20_000).unwrap().len(),
            10_000
        );
        assert_eq!(
            decode_content(&h, gz, 9_999),
            Err(BodyError::TooLarge(9_999))
        );
        h.insert_header("Content-Encoding", "br").unwrap();
        assert!(matches!(
            decode_content(&h, Bytes::from_static(b"x"), 10),
            Err(BodyError::Encoding { .. })
        ));
    }
}
