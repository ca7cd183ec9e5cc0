//! The long tail of an upload: each share's blocks go to its node through a bounded queue, and a
//! node that holds the encoder back far more than the others is left out (its share dropped from
//! this upload) once the file is happy without it, so one slow node cannot set the pace.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use blackbox_core::StorageIndex;
use blackbox_net::wire::UploadId;
use blackbox_net::{PeerId, Transport};

use crate::upload::write_share_counted;
use crate::{servers_of_happiness, ClientError, NodeRef};

/// Blocks queued per share before the encoder waits for that node.
const QUEUE_PER_SHARE: usize = 16;
/// A node is a straggler only after it has held the encoder back this long in all...
const MIN_STALL: Duration = Duration::from_secs(1);
/// ...and for at least this share of the time spent so far (counting only waits while the other
/// queues had room).
const STALL_SHARE: f64 = 0.25;

/// Once the file is happy, shares still being sent get this long to finish, at least...
const MIN_GRACE: Duration = Duration::from_millis(500);
/// ...or this share of the time the pass has taken; one that at its pace so far would not make
/// it is left out at once (once its pace is known from this many blocks), any at twice that.
const GRACE_SHARE: f64 = 0.1;
const PACE_KNOWN_AFTER: u64 = 8;
/// How often the shares still being sent are looked at once the file is happy.
const TICK: Duration = Duration::from_millis(50);

/// When a share may be left out: the shares placed before this pass and the happiness to keep.
#[derive(Debug, Clone)]
pub(crate) struct Straggle {
    pub placed: Vec<(u8, PeerId)>,
    pub happy: usize,
}

struct Worker {
    share: u8,
    node: NodeRef,
    id: UploadId,
    tx: Option<mpsc::Sender<(u64, Bytes)>>,
    task: JoinHandle<Result<(), ClientError>>,
    /// How long the encoder waited for this share's queue to have room.
    stalled: Duration,
    left_out: bool,
    /// Blocks the node acknowledged.
    acked: Arc<AtomicU64>,
}

/// One sender task per share, fed segment by segment.
pub(crate) struct Senders {
    workers: Vec<Worker>,
    started: Instant,
    straggle: Option<Straggle>,
    /// Segments queued so far.
    segments: u64,
}

/// What became of each share of a pass: sent whole, failed, left out as too slow.
pub(crate) type Outcomes = (Vec<(u8, NodeRef, UploadId)>, Vec<(u8, NodeRef, ClientError)>, Vec<(u8, NodeRef)>);

impl Senders {
    /// Starts a sender for each target; `straggle` says whether shares may be left out.
    pub(crate) fn start<T: Transport>(
        transport: &T,
        si: StorageIndex,
        targets: Vec<(u8, NodeRef, UploadId)>,
        straggle: Option<Straggle>,
    ) -> Self {
        let workers = targets
            .into_iter()
            .map(|(share, node, id)| {
                let (tx, rx) = mpsc::channel(QUEUE_PER_SHARE);
                let acked = Arc::new(AtomicU64::new(0));
                let task = tokio::spawn(write_share_counted(
                    transport.clone(),
                    node.clone(),
                    (si, share, id),
                    rx,
                    acked.clone(),
                ));
                Worker { share, node, id, tx: Some(tx), task, stalled: Duration::ZERO, left_out: false, acked }
            })
            .collect();
        Self { workers, started: Instant::now(), straggle, segments: 0 }
    }

    /// Queues segment `index`'s block of every share, waiting where a queue is full.
    pub(crate) async fn send_segment(&mut self, index: u64, blocks: &[Bytes]) {
        for i in 0..self.workers.len() {
            let Some(sender) = self.workers[i].tx.clone() else { continue };
            let block = blocks.get(self.workers[i].share as usize).cloned().unwrap_or_default();
            match sender.try_send((index, block)) {
                Ok(()) => {}
                // That share's node failed; its worker reports why.
                Err(TrySendError::Closed(_)) => self.workers[i].tx = None,
                Err(TrySendError::Full(item)) => {
                    // Its fault only if the other queues have room: when every node is as slow
                    // (a shared link), nobody is to blame.
                    let blamed = self.others_have_room(i);
                    let waited = Instant::now();
                    let w = &mut self.workers[i];
                    if sender.send(item).await.is_err() {
                        w.tx = None;
                    }
                    if blamed {
                        w.stalled += waited.elapsed();
                    }
                }
            }
        }
        self.segments += 1;
        self.leave_out_straggler();
    }

    /// Whether the median queue of the other active shares is at most a quarter full.
    fn others_have_room(&self, i: usize) -> bool {
        let fill = (self.workers.iter().enumerate())
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, w)| w.tx.as_ref().map(|t| t.max_capacity() - t.capacity()));
        lower_median(fill).is_some_and(|m| m <= QUEUE_PER_SHARE / 4)
    }

    /// Leaves out the share that held the encoder back most, if it is far behind the others and
    /// the file stays happy without it.
    fn leave_out_straggler(&mut self) {
        let Some(policy) = &self.straggle else { return };
        let Some(worst) = self.active().map(|w| w.stalled).max() else { return };
        if worst < MIN_STALL || worst.as_secs_f64() < self.started.elapsed().as_secs_f64() * STALL_SHARE {
            return;
        }
        let Some(i) = self.workers.iter().position(|w| w.tx.is_some() && w.stalled == worst) else { return };
        let remaining: Vec<(u8, PeerId)> = policy
            .placed
            .iter()
            .copied()
            .chain(self.active().filter(|w| w.share != self.workers[i].share).map(|w| (w.share, w.node.peer)))
            .collect();
        if servers_of_happiness(&remaining) < policy.happy {
            return;
        }
        let w = &mut self.workers[i];
        w.tx = None;
        w.task.abort();
        w.left_out = true;
    }

    fn active(&self) -> impl Iterator<Item = &Worker> {
        self.workers.iter().filter(|w| w.tx.is_some())
    }

    /// Closes every queue and waits for the senders; once the file is happy without the ones
    /// still running, those get a grace period to finish before they are left out.
    pub(crate) async fn finish(mut self) -> Outcomes {
        let (mut sent, mut failed, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
        let mut running: Vec<Worker> = Vec::new();
        for mut w in std::mem::take(&mut self.workers) {
            w.tx = None;
            if w.left_out {
                left_out.push((w.share, w.node));
            } else {
                running.push(w);
            }
        }
        let mut happy_at: Option<Instant> = None;
        while !running.is_empty() {
            if happy_at.is_none() && self.happy_without(&sent, &running) {
                happy_at = Some(Instant::now());
            }
            if let Some(at) = happy_at {
                for w in running.extract_if(.., |w| self.overdue(w, at)).collect::<Vec<_>>() {
                    w.task.abort();
                    left_out.push((w.share, w.node));
                }
                if running.is_empty() {
                    break;
                }
            }
            let next = async {
                let (result, i, _) = futures::future::select_all(running.iter_mut().map(|w| &mut w.task)).await;
                (result, i)
            };
            // While some are overdue-in-waiting, look again every 50 ms.
            let Ok((result, i)) =
                tokio::time::timeout(if happy_at.is_some() { TICK } else { Duration::MAX }, next).await
            else {
                continue;
            };
            let w = running.swap_remove(i);
            match result {
                Ok(Ok(())) => sent.push((w.share, w.node, w.id)),
                Ok(Err(e)) => failed.push((w.share, w.node, e)),
                Err(e) => failed.push((w.share, w.node, ClientError::crashed("share sender")(e))),
            }
        }
        (sent, failed, left_out)
    }

    /// Whether a share still being sent since the file became happy at `at` is to be left out:
    /// at its pace so far it would finish beyond the grace, or it has had twice the grace.
    fn overdue(&self, w: &Worker, at: Instant) -> bool {
        let grace = MIN_GRACE.as_secs_f64().max(GRACE_SHARE * at.duration_since(self.started).as_secs_f64());
        let waited = at.elapsed().as_secs_f64();
        let acked = w.acked.load(Ordering::Relaxed);
        let left = self.segments.saturating_sub(acked) as f64;
        let eta = left * self.started.elapsed().as_secs_f64() / acked.max(1) as f64;
        waited > 2.0 * grace || (acked >= PACE_KNOWN_AFTER && waited + eta > grace)
    }

    /// Whether the shares sent whole (and those placed before) are happy without `running`.
    fn happy_without(&self, sent: &[(u8, NodeRef, UploadId)], running: &[Worker]) -> bool {
        let Some(policy) = &self.straggle else { return false };
        if running.is_empty() {
            return true;
        }
        let done: Vec<(u8, PeerId)> =
            policy.placed.iter().copied().chain(sent.iter().map(|(s, n, _)| (*s, n.peer))).collect();
        servers_of_happiness(&done) >= policy.happy
    }
}

/// The middle value of `values` (the lower of the two middle ones for an even count); `None`
/// when there are none.
pub(crate) fn lower_median<T: PartialOrd>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut v: Vec<T> = values.collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let mid = v.len().checked_sub(1)? / 2;
    v.into_iter().nth(mid)
}

#[cfg(test)]
mod tests {
    use super::lower_median;

    #[test]
    fn lower_median_takes_the_lower_middle() {
        assert_eq!(lower_median([3, 1, 2].into_iter()), Some(2));
        assert_eq!(lower_median([4, 1, 3, 2].into_iter()), Some(2));
        assert_eq!(lower_median(std::iter::empty::<u8>()), None);
        assert_eq!(lower_median([0.5, f64::INFINITY].into_iter()), Some(0.5));
    }
}
