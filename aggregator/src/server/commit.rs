//! Group commit: concurrent `POST /v1/envelopes` requests are staged together and made
//! durable by one commit, so the cost of a durable SQLite transaction (an fsync) is shared
//! by every envelope of the group instead of paid by each.
//!
//! One thread owns the queue. It takes the first waiting envelope, then keeps taking more
//! until [`GroupCommit::max_envelopes`] have arrived or [`GroupCommit::max_wait`] has
//! passed since the first, whichever comes first; it stages the group with
//! [`Aggregator::stage_many`] (envelopes opened on every core, applied in arrival order),
//! commits once, and only then answers every request of the group.
//! A request is therefore answered `201` only after the commit holding its envelope is
//! durable, and a refused envelope is answered at once without holding the others up.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use confiance::Timestamp;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::query::ApiError;
use crate::ingest::{Ack, IngestError};
use crate::service::Aggregator;
use crate::store::StoreError;

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
pub(crate) fn run(
    agg: &Arc<Mutex<Aggregator>>,
    jobs: &Receiver<Job>,
    policy: GroupCommit,
    metrics: &Metrics,
) {
    while let Ok(first) = jobs.recv() {
        let deadline = Instant::now() + policy.max_wait;
        let mut group = vec![(first, super::api::now())];
        while group.len() < policy.max_envelopes.max(1) {
            match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(j) => group.push((j, super::api::now())),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.queued(-i64::try_from(group.len()).unwrap_or(i64::MAX));
        let t = Instant::now();
        commit_group(agg, group);
        metrics.commit(t.elapsed());
    }
}

/// Stages the group (opened on every core by [`Aggregator::stage_many`]), answers the
/// refused at once, commits, and answers the rest.
///
/// On a shared store a commit can lose a race with another process that committed one
/// of its report ids or envelopes first ([`StoreError::Conflict`]): nothing of the group
/// was kept, so it is not an error of the group. Each of its envelopes is then staged
/// and committed alone, again, and answered by that: a replay now refused, a report
/// already held acknowledged — only an envelope that still cannot commit is refused.
fn commit_group(agg: &Mutex<Aggregator>, group: Vec<(Job, Timestamp)>) {
    let Ok(mut g) = agg.lock() else {
        for (job, _) in group {
            let _ = job.reply.send(Err(ApiError::internal("aggregator lock poisoned")));
        }
        return;
    };
    let frames: Vec<(&[u8], Timestamp)> = group.iter().map(|(j, t)| (&j.frame[..], *t)).collect();
    let results = g.stage_many(&frames);
    drop(frames);
    let mut waiting = Vec::with_capacity(group.len());
    for ((job, t), staged) in group.into_iter().zip(results) {
        match staged {
            Ok(()) => waiting.push((job, t)),
            Err(e) => {
                let _ = job.reply.send(Err(ApiError::from_ingest(&e)));
            }
        }
    }
    if waiting.is_empty() {
        return;
    }
    match g.commit(super::api::now()) {
        // The acks come in staging order, the order of `waiting`.
        Ok(acks) => {
            for ((job, _), ack) in waiting.into_iter().zip(acks) {
                let _ = job.reply.send(Ok(ack));
            }
        }
        Err(StoreError::Conflict) => {
            for (job, t) in waiting {
                let answer = commit_alone(&mut g, &job.frame, t);
                let _ = job.reply.send(answer);
            }
        }
        Err(e) => {
            let err = ApiError::from_ingest(&IngestError::Store(e));
            for (job, _) in waiting {
                let _ = job.reply.send(Err(err.clone()));
            }
        }
    }
}

/// Most tries of one envelope alone after its group lost a race ([`commit_group`]).
const ALONE_TRIES: usize = 3;

/// Stages and commits one envelope by itself, again while it loses races with other
/// processes (each try sees what the winner committed, so it ends as a replay or an
/// acknowledgement); refused with the conflict after [`ALONE_TRIES`].
fn commit_alone(g: &mut Aggregator, frame: &[u8], t: Timestamp) -> Result<Ack, ApiError> {
    let mut last = StoreError::Conflict;
    for _ in 0..ALONE_TRIES {
        g.stage(frame, t).map_err(|e| ApiError::from_ingest(&e))?;
        match g.commit(super::api::now()) {
            Ok(mut acks) => {
                return acks.pop().ok_or_else(|| ApiError::from_ingest(&IngestError::Empty));
            }
            Err(StoreError::Conflict) => last = StoreError::Conflict,
            Err(e) => return Err(ApiError::from_ingest(&IngestError::Store(e))),
        }
    }
    Err(ApiError::from_ingest(&IngestError::Store(last)))
}
