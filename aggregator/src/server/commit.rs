//! Group commit: concurrent `POST /v1/envelopes` requests are staged together and made
//! durable by one commit, so the cost of a durable SQLite transaction (an fsync) is shared
//! by every envelope of the group instead of paid by each.
//!
//! One thread owns the queue. It takes the first waiting envelope, then keeps taking more
//! until [`GroupCommit::max_envelopes`] are staged or [`GroupCommit::max_wait`] has passed
//! since the first, whichever comes first; it stages each as it arrives (so opening them
//! overlaps the wait), commits once, and only then answers every request of the group.
//! A request is therefore answered `201` only after the commit holding its envelope is
//! durable, and a refused envelope is answered at once without holding the others up.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::oneshot;

use super::query::ApiError;
use crate::ingest::{Ack, IngestError};
use crate::service::Aggregator;

/// How envelopes are grouped into commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    /// Most envelopes one commit holds.
    pub max_envelopes: usize,
    /// Longest an envelope waits for others before its group is committed.
    pub max_wait: Duration,
}

impl Default for GroupCommit {
    /// 256 envelopes or 2 ms.
    fn default() -> Self {
        Self { max_envelopes: 256, max_wait: Duration::from_millis(2) }
    }
}

/// An envelope waiting for its commit, and where to send the answer.
pub(crate) struct Job {
    pub(crate) frame: Bytes,
    pub(crate) reply: oneshot::Sender<Result<Ack, ApiError>>,
}

/// Runs until every sender of `jobs` is dropped (the server has stopped and every
/// in-flight request has had its answer).
pub(crate) fn run(agg: &Arc<Mutex<Aggregator>>, jobs: &Receiver<Job>, policy: GroupCommit) {
    while let Ok(first) = jobs.recv() {
        let Ok(mut g) = agg.lock() else {
            let _ = first.reply.send(Err(ApiError::internal("aggregator lock poisoned")));
            continue;
        };
        let deadline = Instant::now() + policy.max_wait;
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match g.stage(&job.frame, super::api::now()) {
                Ok(()) => waiting.push(job.reply),
                Err(e) => {
                    let _ = job.reply.send(Err(ApiError::from_ingest(&e)));
                }
            }
            if waiting.len() >= policy.max_envelopes.max(1) {
                break;
            }
            next = match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
            };
        }
        if waiting.is_empty() {
            continue;
        }
        match g.commit(super::api::now()) {
            // The acks come in staging order, the order of `waiting`.
            Ok(acks) => {
                for (reply, ack) in waiting.into_iter().zip(acks) {
                    let _ = reply.send(Ok(ack));
                }
            }
            Err(e) => {
                let err = ApiError::from_ingest(&IngestError::Store(e));
                for reply in waiting {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
