//! The scheduler: runs a DAG's nodes, each once every node it reads has succeeded, at
//! most `workers` at a time, and stops scheduling at the first failure (nodes not started
//! are skipped; nodes already running finish). It knows nothing of what a node is: SQL,
//! Python or an expectation are the same to it (DESIGN §7 "a node is a node").

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

/// A node's work: `Err` carries why it failed.
pub type NodeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What the scheduler tells its caller as nodes move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started(usize),
    Succeeded(usize),
    Failed(usize, String),
    /// Never started: an earlier node failed.
    Skipped(usize),
}

/// Runs the nodes (`upstream[n]`: the nodes node `n` reads), calling `start(n)` for each
/// node's work and `event` as they move; returns each node's final state.
pub async fn run(
    upstream: &[Vec<usize>],
    workers: usize,
    mut start: impl FnMut(usize) -> NodeFuture,
    mut event: impl FnMut(Event),
) -> Vec<NodeState> {
    let n = upstream.len();
    let mut state = vec![NodeState::Pending; n];
    let mut waiting: Vec<usize> = upstream.iter().map(Vec::len).collect();
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (node, ups) in upstream.iter().enumerate() {
        for &up in ups {
            readers[up].push(node);
        }
    }
    // Ready nodes in plan order.
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut running = FuturesUnordered::new();
    let mut failed = false;
    loop {
        while !failed && running.len() < workers.max(1) {
            let Some(node) = ready.pop_first() else { break };
            state[node] = NodeState::Running;
            event(Event::Started(node));
            let work = start(node);
            running.push(async move { (node, work.await) });
        }
        let Some((node, result)) = running.next().await else {
            break;
        };
        match result {
            Ok(()) => {
                state[node] = NodeState::Succeeded;
                event(Event::Succeeded(node));
                for &r in &readers[node] {
                    waiting[r] -= 1;
                    if waiting[r] == 0 {
                        ready.insert(r);
                    }
                }
            }
            Err(why) => {
                state[node] = NodeState::Failed;
                event(Event::Failed(node, why));
                failed = true;
            }
        }
    }
    for (node, s) in state.iter_mut().enumerate() {
        if *s == NodeState::Pending {
            *s = NodeState::Skipped;
            event(Event::Skipped(node));
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    use super::*;

    #[tokio::test]
    async fn a_fan_in_runs_in_order_and_in_parallel_up_to_the_bound() {
        // 0 and 1 are independent, 2 reads both.
        let upstream = vec![vec![], vec![], vec![0, 1]];
        let live = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        // Node 0 waits until node 1 has started: they must overlap.
        let one_started = Arc::new(Notify::new());
        let mut events = Vec::new();
        let states = run(
            &upstream,
            2,
            |n| {
                let (live, most, one_started) = (live.clone(), most.clone(), one_started.clone());
                Box::pin(async move {
                    let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    match n {
                        0 => one_started.notified().await,
                        1 => one_started.notify_one(),
                        _ => {}
                    }
                    live.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
            },
            |e| events.push(e),
        )
        .await;
        assert_eq!(states, vec![NodeState::Succeeded; 3]);
        assert_eq!(most.load(Ordering::SeqCst), 2);
        let started_2 = events.iter().position(|e| *e == Event::Started(2)).unwrap();
        let done_0 = events
            .iter()
            .position(|e| *e == Event::Succeeded(0))
            .unwrap();
        let done_1 = events
            .iter()
            .position(|e| *e == Event::Succeeded(1))
            .unwrap();
        assert!(started_2 > done_0 && started_2 > done_1, "{events:?}");
    }

    #[tokio::test]
    async fn the_first_failure_stops_scheduling_and_skips_the_rest() {
        // A chain 0 -> 1 -> 2, and 3 independent but later in plan order; one worker.
        let upstream = vec![vec![], vec![0], vec![1], vec![]];
        let states = run(
            &upstream,
            1,
            |n| {
                Box::pin(async move {
                    if n == 0 {
                        Err("boom".to_owned())
                    } else {
                        Ok(())
                    }
                })
            },
            |_| {},
        )
        .await;
        assert_eq!(
            states,
            vec![
                NodeState::Failed,
                NodeState::Skipped,
                NodeState::Skipped,
                NodeState::Skipped
            ]
        );
    }
}
