//! Durability as a Stateright actor model: a server that applies commits in memory, makes
//! them durable with one save per group (the durability thread), and acknowledges only
//! after the save; clients that commit, then read the head. The server may crash
//! (`max_crashes`) and recovers from its durable `Storage` only.
//!
//! Two `always` properties: every acknowledged commit is present after recovery, and no
//! client ever saw a head that recovery lost. Two mutants remove their guards: the server
//! acknowledges before saving, or answers reads with the not-yet-durable head.

use std::borrow::Cow;

use stateright::Expectation;
use stateright::actor::{Actor, ActorModel, ActorModelState, Id, Network, Out, model_timeout};

/// A guard removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// Acknowledge a commit as soon as it is applied, before the save.
    AckBeforeSave,
    /// Answer reads with the applied head, durable or not.
    ReadNonDurable,
}

impl Mutant {
    pub const ALL: [Mutant; 2] = [Mutant::AckBeforeSave, Mutant::ReadNonDurable];

    pub fn breaks(self) -> &'static str {
        match self {
            Mutant::AckBeforeSave => ACKED_SURVIVE,
            Mutant::ReadNonDurable => SEEN_SURVIVE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mutant::AckBeforeSave => "ack-before-save",
            Mutant::ReadNonDurable => "read-non-durable",
        }
    }
}

pub const ACKED_SURVIVE: &str = "every acknowledged commit is present after crash and recovery";
pub const SEEN_SURVIVE: &str = "no client observed a head that recovery lost";
pub const SOME_ACK: &str = "a commit is acknowledged";
pub const SOME_RECOVERY: &str = "the server recovers with acknowledged commits";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    Commit,
    /// The head after the acknowledged commit.
    Ack(u64),
    Read,
    Head(u64),
}

/// The durability thread's wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sync;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeState {
    Server {
        /// Commits applied in memory (the pending head).
        applied: u64,
        /// Commits saved (the durable head).
        durable: u64,
        /// Writers waiting for the save that covers them: (client, head).
        waiting: Vec<(Id, u64)>,
    },
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

impl Actor for Node {
    type Msg = Msg;
    type State = NodeState;
    type Timer = Sync;
    type Random = ();
    /// The server's durable head (a client saves 0 once it started).
    type Storage = u64;

    fn on_start(&self, _id: Id, storage: &Option<u64>, o: &mut Out<Self>) -> NodeState {
        match self {
            Node::Server { .. } => {
                o.set_timer(Sync, model_timeout());
                let head = storage.unwrap_or(0);
                NodeState::Server {
                    applied: head,
                    durable: head,
                    waiting: Vec::new(),
                }
            }
            Node::Client { server, commits } => {
                // A client commits once per life it remembers: after a crash it sends
                // nothing more (its storage says it started), which bounds the model.
                if storage.is_some() || *commits == 0 {
                    return NodeState::Client { to_send: 0 };
                }
                o.save(0);
                o.send(*server, Msg::Commit);
                NodeState::Client {
                    to_send: commits - 1,
                }
            }
        }
    }

    fn on_msg(
        &self,
        _id: Id,
        state: &mut Cow<'_, NodeState>,
        src: Id,
        msg: Msg,
        o: &mut Out<Self>,
    ) {
        match (self, state.to_mut()) {
            (
                Node::Server { mutant },
                NodeState::Server {
                    applied,
                    durable,
                    waiting,
                },
            ) => match msg {
                Msg::Commit => {
                    *applied += 1;
                    if *mutant == Some(Mutant::AckBeforeSave) {
                        o.send(src, Msg::Ack(*applied));
                    } else {
                        waiting.push((src, *applied));
                    }
                }
                Msg::Read => {
                    let head = if *mutant == Some(Mutant::ReadNonDurable) {
                        *applied
                    } else {
                        *durable
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
        _timer: &Sync,
        o: &mut Out<Self>,
    ) {
        o.set_timer(Sync, model_timeout());
        let NodeState::Server {
            applied,
            durable,
            waiting,
        } = &**state
        else {
            return;
        };
        if applied == durable {
            return;
        }
        // One save covers every applied commit; then the waiting writers are told.
        let (head, acks) = (*applied, waiting.clone());
        o.save(head);
        for (client, at) in acks {
            o.send(client, Msg::Ack(at));
        }
        if let NodeState::Server {
            durable, waiting, ..
        } = state.to_mut()
        {
            *durable = head;
            waiting.clear();
        }
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

/// The server's head, or `None` while it is down. After a recovery it is what the server
/// restored from storage plus what it applied since.
fn server_head(state: &ActorModelState<Node, Learned>) -> Option<u64> {
    if state.crashed[0] {
        return None;
    }
    match &*state.actor_states[0] {
        NodeState::Server { applied, .. } => Some(*applied),
        NodeState::Client { .. } => None,
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
        // A client that crashes and recovers sends its commits again: bound the total.
        .within_boundary(|cfg, state| {
            server_head(state).is_none_or(|h| {
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
            server_head(state).is_none_or(|h| h >= state.history.acked)
        })
        .property(Expectation::Always, SEEN_SURVIVE, |_, state| {
            server_head(state).is_none_or(|h| h >= state.history.seen)
        })
        .property(Expectation::Sometimes, SOME_ACK, |_, state| {
            state.history.acked > 0
        })
        .property(Expectation::Sometimes, SOME_RECOVERY, |_, state| {
            state.history.acked > 0
                && !state.crashed[0]
                && state.actor_storages[0].is_some()
                && matches!(&*state.actor_states[0], NodeState::Server { applied, .. } if *applied == state.actor_storages[0].unwrap_or(0))
        })
}
