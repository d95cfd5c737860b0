//! Frames between the sidecar and a hook worker process: a 4-byte big-endian length, a
//! one-byte tag, then the payload. Calls are pipelined: the sidecar may send the next
//! call before the current one is answered, and the worker answers strictly in order.
//!
//! The hot frames avoid a second JSON layer: a call is the deadline and the input JSON
//! as is, and a settled call is the JS driver's own JSON text, parsed once by the pool.

use super::engine::{LogLine, RawOutcome};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest frame either side accepts; a bigger one means a broken peer.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Sidecar → worker: compile these hooks (JSON `Init`), once, first.
pub const TAG_INIT: u8 = 1;
/// Sidecar → worker: run one call. Payload: deadline (u64 BE, ms since the Unix epoch;
/// the two processes share the wall clock but not an `Instant`), then the input JSON.
pub const TAG_CALL: u8 = 2;
/// Worker → sidecar: compiled; payload each step's form (`legacy` or `action`),
/// comma-separated.
pub const TAG_READY: u8 = 3;
/// Worker → sidecar: a step did not compile; payload the message, naming it.
pub const TAG_COMPILE_ERROR: u8 = 4;
/// Worker → sidecar: the call is over; payload a JSON array with one entry per step
/// that ran (see `Done::parse`).
pub const TAG_FINISHED: u8 = 5;
/// Worker → sidecar, during a call: `fetch` requests of one step, JSON
/// `{"step": N, "requests": [{"id": …, "request": egress::FetchRequest}, …]}`.
pub const TAG_FETCH: u8 = 7;
/// Sidecar → worker, during a call: one request's answer, JSON
/// `{"id": …, "result": egress::FetchResult}`.
pub const TAG_FETCH_REPLY: u8 = 8;

#[derive(Debug, Serialize, Deserialize)]
pub struct Init {
    /// The flow's steps, in the order they run (D19).
    pub steps: Vec<StepInit>,
    /// Which claim names count as set, for what later Actions see (D19).
    pub allow_unnamespaced: bool,
    pub memory_limit_bytes: u64,
    pub loop_iterations: u64,
    pub recursion: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StepInit {
    pub name: String,
    pub source: String,
    /// Secrets as a JSON object. Only ever sent over the pipe, never logged.
    pub secrets: String,
    /// This step's own time limit; the call's deadline bounds the whole flow.
    pub timeout_ms: u64,
}

/// How one step of a call ended inside the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepDone {
    pub outcome: RawOutcome,
    pub logs: Vec<LogLine>,
}

/// How one call ended: the steps that ran, in order. A flow stops at the first step
/// that does not let the request go on, so only the last may have failed.
#[derive(Debug, Clone, Default)]
pub struct Done {
    pub steps: Vec<StepDone>,
    /// The flow index of `steps[0]`: 0, unless the call was lost in a later step (its
    /// worker killed there), whose earlier steps' answers never came.
    pub first: usize,
}

/// A call its worker never answered: why (the process's exit, a broken pipe), and the
/// flow step it was in (`hooks::progress`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub reason: String,
    pub step: usize,
}

impl From<String> for Lost {
    /// Lost with no word of its step: the first step's, as a flow of one has.
    fn from(reason: String) -> Lost {
        Lost { reason, step: 0 }
    }
}

/// One entry of a `TAG_FINISHED` array: either the JS driver's own final text
/// (`{"state": …, "logs": […]}`, forwarded unparsed by the worker) or an outcome the
/// worker decided (`{"outcome": …, "logs": […]}`).
#[derive(Deserialize)]
struct StepWire {
    #[serde(default)]
    state: Option<Box<super::engine::State>>,
    #[serde(default)]
    outcome: Option<RawOutcome>,
    #[serde(default)]
    logs: Vec<LogLine>,
}

impl Done {
    /// A call that ended before any step answered (timed out in the queue, killed).
    pub fn ended(outcome: RawOutcome) -> Done {
        Done::ended_at(0, outcome)
    }

    /// A call that ended in step `first` without its answer (its worker killed).
    pub fn ended_at(first: usize, outcome: RawOutcome) -> Done {
        Done {
            steps: vec![StepDone {
                outcome,
                logs: Vec::new(),
            }],
            first,
        }
    }

    /// Reads a `TAG_FINISHED` payload.
    pub fn parse(payload: &[u8]) -> Result<Done, String> {
        let wire: Vec<StepWire> = serde_json::from_slice(payload)
            .map_err(|e| format!("hook worker answered badly: {e}"))?;
        let steps = wire
            .into_iter()
            .map(|w| StepDone {
                outcome: match (w.outcome, w.state) {
                    (Some(o), _) => o,
                    (None, Some(state)) => RawOutcome::Finished { state },
                    (None, None) => RawOutcome::Aborted {
                        message: "driver returned no state".into(),
                    },
                },
                logs: w.logs,
            })
            .collect();
        Ok(Done { steps, first: 0 })
    }
}

/// One frame: the header and payload in a single buffer, so it is one write.
pub fn frame(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len + 4);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(tag);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A call frame for `input`, due by `deadline`.
pub fn call_frame(input: &impl serde::Serialize, deadline: Instant) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&[0, 0, 0, 0, TAG_CALL]);
    out.extend_from_slice(&deadline_ms(deadline).to_be_bytes());
    // Serializing plain data (string keys only) into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, input);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `deadline` on the wall clock, in ms since the epoch.
pub fn deadline_ms(deadline: Instant) -> u64 {
    unix_ms(SystemTime::now())
        + deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64
}

/// The time left until a wall-clock deadline from `deadline_ms`.
pub fn remaining(deadline_ms: u64) -> Duration {
    Duration::from_millis(deadline_ms.saturating_sub(unix_ms(SystemTime::now())))
}

/// Splits one complete frame off the front of `buf`, if there is one.
pub fn split_frame(buf: &mut bytes::BytesMut) -> std::io::Result<Option<(u8, bytes::Bytes)>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    let mut f = buf.split_to(4 + len).freeze();
    let _ = f.split_to(4);
    let tag = f[0];
    let _ = f.split_to(1);
    Ok(Some((tag, f)))
}

/// Blocking read of one frame; `None` at end of stream.
pub fn read_blocking(r: &mut impl std::io::Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..4]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    r.read_exact(&mut head[4..5])?;
    let mut buf = vec![0; len - 1];
    r.read_exact(&mut buf)?;
    Ok(Some((head[4], buf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_whole_and_wait_for_the_rest() {
        let a = frame(TAG_READY, &[b"legacy"]);
        let b = call_frame(&serde_json::json!({"k": 1}), Instant::now());
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&b[..7]);
        let (tag, payload) = split_frame(&mut buf).unwrap().unwrap();
        assert_eq!((tag, &payload[..]), (TAG_READY, &b"legacy"[..]));
        assert!(split_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&b[7..]);
        let (tag, payload) = split_frame(&mut buf).unwrap().unwrap();
        assert_eq!(tag, TAG_CALL);
        assert_eq!(&payload[8..], br#"{"k":1}"#);
        assert!(buf.is_empty());
        let mut r = &a[..];
        assert_eq!(
            read_blocking(&mut r).unwrap(),
            Some((TAG_READY, b"legacy".to_vec()))
        );
        assert_eq!(read_blocking(&mut r).unwrap(), None);
    }

    #[test]
    fn a_zero_or_huge_length_is_an_error() {
        let mut buf = bytes::BytesMut::from(&[0u8, 0, 0, 0, 1][..]);
        assert!(split_frame(&mut buf).is_err());
        let mut buf = bytes::BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert!(split_frame(&mut buf).is_err());
    }
}
