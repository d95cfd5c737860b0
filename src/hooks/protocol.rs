//! Messages between the sidecar and a hook worker process: a 4-byte big-endian length,
//! then JSON. One request in flight per worker at a time.

use super::engine::{LogLine, RawOutcome};
use serde::{Deserialize, Serialize};

/// Largest frame either side accepts; a bigger one means a broken peer.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToWorker {
    /// First message: compile this hook.
    Init {
        source: String,
        /// Secrets as a JSON object. Only ever sent over the pipe, never logged.
        secrets: String,
        memory_limit_bytes: u64,
        loop_iterations: u64,
        recursion: usize,
    },
    Call {
        input: serde_json::Value,
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum FromWorker {
    Ready { form: String },
    CompileError { message: String },
    Done(Done),
}

/// How one call ended inside the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub outcome: RawOutcome,
    pub logs: Vec<LogLine>,
}

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Blocking read of one frame.
pub fn read_blocking<T: for<'de> Deserialize<'de>>(
    r: &mut impl std::io::Read,
) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf)?;
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
