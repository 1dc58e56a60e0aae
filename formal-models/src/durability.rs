//! Durability as a Stateright actor model of the write-ahead-log protocol: a server whose
//! storage is an index (sled: refs, objects) and a log (the WAL file), and clients that
//! commit, then read the head. The server may crash (`max_crashes`) and recovers from what
//! its devices hold.
//!
//! A commit is applied to the index in memory, and the same atomic index write sets the
//! index's marker to the commit's log sequence number (lsn); its record is appended to the
//! log buffer and its writer waits. The durability thread writes every buffered record to
//! the log and fdatasyncs once, moves the durable point and acknowledges the group; reads
//! answer the durable head. A checkpoint notes the last applied lsn C, flushes the index
//! (sled's flush and an fdatasync), and only then deletes the log's records up to C.
//!
//! A crash loses everything volatile, the page cache included: the index keeps any prefix
//! of its writes from the last completed flush to what was applied (the OS writes sled's
//! pages back when it likes, in order), the log its synced records not deleted and any
//! prefix of the buffered ones. Recovery replays the log's records after the index's
//! marker, then flushes the index before it serves: after a process crash what it read may
//! be the page cache's alone, so until that flush a power loss could take it back.
//!
//! Three `always` properties: every acknowledged commit is present after recovery, no
//! client saw a head that recovery lost, and the server's state is a prefix of the write
//! order. Each `Mutant` removes a guard; each breaks one of them.

use std::borrow::Cow;

use stateright::Expectation;
use stateright::actor::{Actor, ActorModel, ActorModelState, Id, Network, Out, model_timeout};

/// A guard removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// Acknowledge a commit as soon as it is applied, before the sync of its group.
    AckBeforeSync,
    /// Answer reads with the applied head, durable or not.
    ReadNonDurable,
    /// The checkpoint deletes the log's records up to C first and flushes the index after:
    /// a crash between the two finds neither.
    CheckpointBeforeFlush,
    /// The checkpoint deletes the records up to the lsn applied when it deletes, not the C
    /// it noted before the flush: the commits applied during the flush are in neither.
    CheckpointPastApplied,
    /// Recovery replays every log record, ignoring the index's marker: a record older than
    /// the index is applied on top of it.
    ReplayIgnoresMarker,
    /// Recovery serves without flushing the index it recovered. After a process crash what
    /// it read may be in the page cache only (the index's pages written back after the log's
    /// last sync, the unsynced part of a group): a power loss then takes back a head that
    /// clients read and that later commits build on.
    RecoveryWithoutFlush,
}

impl Mutant {
    pub const ALL: [Mutant; 6] = [
        Mutant::AckBeforeSync,
        Mutant::ReadNonDurable,
        Mutant::CheckpointBeforeFlush,
        Mutant::CheckpointPastApplied,
        Mutant::ReplayIgnoresMarker,
        Mutant::RecoveryWithoutFlush,
    ];

    /// The property this mutant breaks.
    pub fn breaks(self) -> &'static str {
        match self {
            Mutant::AckBeforeSync
            | Mutant::CheckpointBeforeFlush
            | Mutant::CheckpointPastApplied => ACKED_SURVIVE,
            Mutant::ReadNonDurable => SEEN_SURVIVE,
            Mutant::ReplayIgnoresMarker | Mutant::RecoveryWithoutFlush => PREFIX,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mutant::AckBeforeSync => "ack-before-sync",
            Mutant::ReadNonDurable => "read-non-durable",
            Mutant::CheckpointBeforeFlush => "checkpoint-before-flush",
            Mutant::CheckpointPastApplied => "checkpoint-past-applied",
            Mutant::ReplayIgnoresMarker => "replay-ignores-marker",
            Mutant::RecoveryWithoutFlush => "recovery-without-flush",
        }
    }
}

pub const ACKED_SURVIVE: &str = "every acknowledged commit is present after crash and recovery";
pub const SEEN_SURVIVE: &str = "no client observed a head that recovery lost";
pub const PREFIX: &str = "the state is a prefix of the write order";
pub const SOME_ACK: &str = "a commit is acknowledged";
pub const SOME_RECOVERY: &str = "the server recovers with acknowledged commits";
pub const SOME_LOG_ONLY: &str = "a crash leaves an acknowledged commit in the log alone";
pub const SOME_INDEX_ONLY: &str =
    "a crash leaves an acknowledged commit in the index alone (its record deleted)";
pub const SOME_INDEX_AHEAD: &str = "a crash may leave the index ahead of the log's last record";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    Commit,
    /// The head after the acknowledged commit.
    Ack(u64),
    Read,
    Head(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The durability thread's wake-up: one group sync.
    Sync,
    /// The checkpoint thread's: one step of a checkpoint.
    Checkpoint,
}

/// A set of writes by lsn (bit `lsn - 1`). Commit `lsn` sets the head to `lsn` and adds
/// its write: a state holding a write without every earlier one, or one past its head,
/// is not a prefix of the write order (a record replayed out of place).
pub type Writes = u16;

/// The writes `1..=lsn`.
fn upto(lsn: u64) -> Writes {
    ((1u32 << lsn) - 1) as Writes
}

fn bit(lsn: u64) -> Writes {
    1 << (lsn - 1)
}

/// The lsn of the newest write in `writes` (0 for none).
fn last(writes: Writes) -> u64 {
    u64::from(Writes::BITS - writes.leading_zeros())
}

/// The server's devices, and the bounds of what a crash may leave on them. An actor reads
/// its storage only when it starts, so the server saves this after every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Disk {
    /// The index's marker at its last completed flush (a checkpoint's or recovery's): a
    /// crash keeps at least this prefix of the index writes.
    pub flushed: u64,
    /// The index's marker in memory (the pending head): the OS may have written back any
    /// prefix of the index writes up to it.
    pub applied: u64,
    /// The durable point: the log's end the last fdatasync covered. The records after it,
    /// up to `applied`, are buffered; a crash may leave any prefix of them in the file (a
    /// group written but not synced, or part of one).
    pub synced: u64,
    /// The log's records in the file: synced and not deleted.
    pub log: Writes,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Storage {
    Disk(Disk),
    /// A client started (it commits once per life it remembers).
    Started,
}

/// What a crash left on the devices: the index's prefix (its marker) and the log's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Left {
    pub index: u64,
    pub log: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeState {
    Server {
        /// The writes the index holds in memory; `disk.applied` is its marker.
        writes: Writes,
        disk: Disk,
        /// Writers waiting for the sync that covers them: (client, lsn).
        waiting: Vec<(Id, u64)>,
        /// A checkpoint between its two steps: the C it noted.
        checkpoint: Option<u64>,
    },
    /// Restarted after a crash, before it chose what the crash left (`Left`).
    Recovering(Disk),
    Client {
        /// Commits still to send.
        to_send: u8,
    },
}

#[derive(Debug, Clone)]
pub enum Node {
    Server { mutant: Option<Mutant> },
    Client { server: Id, commits: u8 },
}

/// The server after recovery from what a crash left: the index's prefix (the writes up to
/// its marker: a state that is no prefix is a counterexample already), then the log's
/// records after the marker in lsn order (every record, for `ReplayIgnoresMarker`), each
/// setting the head. Then recovery flushes the index: the recovered head is the durable
/// point and the floor of the next crash (`RecoveryWithoutFlush` keeps the last
/// checkpoint's floor).
fn recover(disk: &Disk, left: Left, mutant: Option<Mutant>) -> NodeState {
    // The file: its synced records, and the prefix of the buffered ones the crash left.
    let log = disk.log | (upto(left.log) & !upto(disk.synced));
    let mut writes = upto(left.index);
    let mut head = left.index;
    let after = if mutant == Some(Mutant::ReplayIgnoresMarker) {
        0
    } else {
        left.index
    };
    for lsn in (after + 1..=last(log)).filter(|&lsn| log & bit(lsn) != 0) {
        writes |= bit(lsn);
        head = lsn;
    }
    NodeState::Server {
        writes,
        disk: Disk {
            flushed: if mutant == Some(Mutant::RecoveryWithoutFlush) {
                disk.flushed
            } else {
                head
            },
            applied: head,
            synced: head,
            log,
        },
        waiting: Vec::new(),
        checkpoint: None,
    }
}

fn start_threads(o: &mut Out<Node>) {
    o.set_timer(Timer::Sync, model_timeout());
    o.set_timer(Timer::Checkpoint, model_timeout());
}

impl Actor for Node {
    type Msg = Msg;
    type State = NodeState;
    type Timer = Timer;
    type Random = Left;
    type Storage = Storage;

    fn on_start(&self, _id: Id, storage: &Option<Storage>, o: &mut Out<Self>) -> NodeState {
        match self {
            Node::Server { .. } => {
                let Some(Storage::Disk(disk)) = storage else {
                    start_threads(o);
                    return NodeState::Server {
                        writes: 0,
                        disk: Disk::default(),
                        waiting: Vec::new(),
                        checkpoint: None,
                    };
                };
                // The crash left any prefix of the index writes from the last flush to what
                // was applied (the OS writes sled's pages back when it likes, in order), and
                // any prefix of the buffered records: chosen here, as nothing could look at
                // the devices in between.
                let choices = (disk.flushed..=disk.applied)
                    .flat_map(|index| {
                        (disk.synced..=disk.applied).map(move |log| Left { index, log })
                    })
                    .collect();
                o.choose_random("crash", choices);
                NodeState::Recovering(*disk)
            }
            Node::Client { server, commits } => {
                // A client commits once per life it remembers: after a crash it sends
                // nothing more (its storage says it started), which bounds the model.
                if storage.is_some() || *commits == 0 {
                    return NodeState::Client { to_send: 0 };
                }
                o.save(Storage::Started);
                o.send(*server, Msg::Commit);
                NodeState::Client {
                    to_send: commits - 1,
                }
            }
        }
    }

    fn on_random(&self, _id: Id, state: &mut Cow<'_, NodeState>, left: &Left, o: &mut Out<Self>) {
        let (Node::Server { mutant }, NodeState::Recovering(disk)) = (self, &**state) else {
            return;
        };
        let recovered = recover(disk, *left, *mutant);
        if let NodeState::Server { disk, .. } = &recovered {
            o.save(Storage::Disk(*disk));
        }
        *state.to_mut() = recovered;
        start_threads(o);
    }

    fn on_msg(
        &self,
        _id: Id,
        state: &mut Cow<'_, NodeState>,
        src: Id,
        msg: Msg,
        o: &mut Out<Self>,
    ) {
        // A recovering server takes no message: it stays in the network until recovery ends.
        if matches!(**state, NodeState::Recovering(_)) {
            return;
        }
        match (self, state.to_mut()) {
            (
                Node::Server { mutant },
                NodeState::Server {
                    writes,
                    disk,
                    waiting,
                    ..
                },
            ) => match msg {
                Msg::Commit => {
                    // One atomic index write: the commit's effects and the marker.
                    disk.applied += 1;
                    *writes |= bit(disk.applied);
                    if *mutant == Some(Mutant::AckBeforeSync) {
                        o.send(src, Msg::Ack(disk.applied));
                    } else {
                        waiting.push((src, disk.applied));
                    }
                    o.save(Storage::Disk(*disk));
                }
                Msg::Read => {
                    let head = if *mutant == Some(Mutant::ReadNonDurable) {
                        disk.applied
                    } else {
                        disk.synced
                    };
                    o.send(src, Msg::Head(head));
                }
                Msg::Ack(_) | Msg::Head(_) => {}
            },
            (Node::Client { server, .. }, NodeState::Client { to_send }) => match msg {
                Msg::Ack(_) => {
                    o.send(*server, Msg::Read);
                    if *to_send > 0 {
                        *to_send -= 1;
                        o.send(*server, Msg::Commit);
                    }
                }
                Msg::Head(_) | Msg::Commit | Msg::Read => {}
            },
            _ => {}
        }
    }

    fn on_timeout(
        &self,
        _id: Id,
        state: &mut Cow<'_, NodeState>,
        timer: &Timer,
        o: &mut Out<Self>,
    ) {
        o.set_timer(*timer, model_timeout());
        let (
            Node::Server { mutant },
            NodeState::Server {
                disk, checkpoint, ..
            },
        ) = (self, &**state)
        else {
            return;
        };
        let mutant = *mutant;
        let mut next = *disk;
        let mut step = *checkpoint;
        match timer {
            Timer::Sync => {
                if disk.synced == disk.applied {
                    return;
                }
                // One write and one fdatasync cover every buffered record; then the group's
                // writers are told (a crash before this step may leave part of the group in
                // the file: `Disk::synced`).
                next.log |= upto(disk.applied) & !upto(disk.synced);
                next.synced = disk.applied;
            }
            Timer::Checkpoint => match *checkpoint {
                None => {
                    // Nothing to flush and no record to delete.
                    if disk.applied == disk.flushed && disk.log & upto(disk.applied) == 0 {
                        return;
                    }
                    // Note C, then flush the index up to it (the flush is one step: a crash
                    // during it leaves a prefix, which a crash may leave anyway).
                    let c = disk.applied;
                    if mutant == Some(Mutant::CheckpointBeforeFlush) {
                        next.log &= !upto(c);
                    } else {
                        next.flushed = c;
                    }
                    step = Some(c);
                }
                Some(c) => {
                    // Only after the flush completed: delete the records it covers.
                    match mutant {
                        Some(Mutant::CheckpointBeforeFlush) => next.flushed = c,
                        Some(Mutant::CheckpointPastApplied) => next.log &= !upto(disk.applied),
                        _ => next.log &= !upto(c),
                    }
                    step = None;
                }
            },
        }
        let NodeState::Server {
            disk,
            checkpoint,
            waiting,
            ..
        } = state.to_mut()
        else {
            return;
        };
        *disk = next;
        *checkpoint = step;
        if *timer == Timer::Sync {
            for (client, lsn) in waiting.drain(..) {
                o.send(client, Msg::Ack(lsn));
            }
        }
        o.save(Storage::Disk(next));
    }
}

/// What clients learned: the highest acknowledged head and the highest head read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Learned {
    pub acked: u64,
    pub seen: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mutant: Option<Mutant>,
    pub clients: usize,
    pub commits_per_client: u8,
    pub max_crashes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mutant: None,
            clients: 2,
            commits_per_client: 2,
            max_crashes: 1,
        }
    }
}

/// The running server's index (its writes and its head, the marker), or `None` while it is
/// down or recovering. After a recovery it is what the server restored plus what it applied
/// since.
fn server_index(state: &ActorModelState<Node, Learned>) -> Option<(Writes, u64)> {
    if state.crashed[0] {
        return None;
    }
    match &*state.actor_states[0] {
        NodeState::Server { writes, disk, .. } => Some((*writes, disk.applied)),
        NodeState::Recovering(_) | NodeState::Client { .. } => None,
    }
}

/// The devices of a server that restarted and has not yet chosen what the crash left.
fn recovering(state: &ActorModelState<Node, Learned>) -> Option<&Disk> {
    match &*state.actor_states[0] {
        NodeState::Recovering(disk) if !state.crashed[0] => Some(disk),
        _ => None,
    }
}

pub fn model(cfg: Config) -> ActorModel<Node, Config, Learned> {
    let server = Id::from(0);
    let mut m =
        ActorModel::new(cfg.clone(), Learned::default()).actor(Node::Server { mutant: cfg.mutant });
    for _ in 0..cfg.clients {
        m = m.actor(Node::Client {
            server,
            commits: cfg.commits_per_client,
        });
    }
    m.init_network(Network::new_unordered_nonduplicating([]))
        .max_crashes(cfg.max_crashes)
        // Only the server crashes: a client's crash only stops it (it remembers it started),
        // which a message left in the unordered network forever shows as well, and it would
        // hold off the server's crash (`max_crashes` counts actors down at once). The head
        // never passes the commits sent; the bound guards the writes' bits.
        .within_boundary(|cfg, state| {
            !state.crashed[1..].contains(&true)
                && server_index(state).is_none_or(|(_, h)| {
                    h <= cfg.clients as u64 * u64::from(cfg.commits_per_client) + 1
                })
        })
        .record_msg_in(|_, learned, envelope| match envelope.msg {
            Msg::Ack(head) if *head > learned.acked => Some(Learned {
                acked: *head,
                ..*learned
            }),
            Msg::Head(head) if *head > learned.seen => Some(Learned {
                seen: *head,
                ..*learned
            }),
            _ => None,
        })
        .property(Expectation::Always, ACKED_SURVIVE, |_, state| {
            server_index(state).is_none_or(|(_, h)| h >= state.history.acked)
        })
        .property(Expectation::Always, SEEN_SURVIVE, |_, state| {
            server_index(state).is_none_or(|(_, h)| h >= state.history.seen)
        })
        .property(Expectation::Always, PREFIX, |_, state| {
            server_index(state).is_none_or(|(writes, h)| writes == upto(h))
        })
        .property(Expectation::Sometimes, SOME_ACK, |_, state| {
            state.history.acked > 0
        })
        .property(Expectation::Sometimes, SOME_RECOVERY, |_, state| {
            state.history.acked > 0 && recovering(state).is_some()
        })
        .property(Expectation::Sometimes, SOME_LOG_ONLY, |_, state| {
            recovering(state).is_some_and(|d| d.flushed < state.history.acked)
        })
        // An acknowledged record leaves the log only by a checkpoint's deletion.
        .property(Expectation::Sometimes, SOME_INDEX_ONLY, |_, state| {
            let acked = state.history.acked;
            recovering(state).is_some_and(|d| acked > 0 && d.log & bit(acked) == 0)
        })
        // Where the marker matters: a record older than the index's prefix could be replayed.
        .property(Expectation::Sometimes, SOME_INDEX_AHEAD, |_, state| {
            recovering(state).is_some_and(|d| d.log != 0 && d.applied > last(d.log))
        })
}
