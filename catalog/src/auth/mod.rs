//! Authorization (DESIGN §1): who asks (`Principal`), what they ask (`Action`) and the
//! `Policy` that decides. Every catalog entry point calls `Catalog::authorize` before it
//! touches the store. With authentication off the policy is `AllowAll`; with it on it is
//! the catalog's own rules (`policy.rs`, kept in the meta keyspace), and principals come
//! from the tokens floe issues (`tokens.rs`).

mod policy;
mod tokens;

pub use policy::{Perm, PolicyDoc, PolicyError, Rules};
pub use tokens::{ADMIN, NewToken, TokenInfo};

use std::fmt;

use floe_commits::{ContentKey, RefName};

/// The name the reflog records for requests that carry no credentials.
pub const ANONYMOUS: &str = "anonymous";

/// Who a request acts for. Built by the HTTP layer from the request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    name: String,
    anonymous: bool,
    /// Set when the run executor acts for this principal inside a run (an import, later
    /// a pipeline run): its commits carry `floe.run.id` and it may write the run's
    /// `floe-run/` branch.
    run: Option<String>,
    /// Roles its credentials carry (a token's), beside those the policy maps its name to
    /// (shared: a principal is cloned on every request).
    roles: std::sync::Arc<Vec<String>>,
    /// Groups its identity provider vouches for (an OIDC claim's values), which the
    /// policy's `[groups]` maps to roles.
    groups: std::sync::Arc<Vec<String>>,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            name: ANONYMOUS.to_owned(),
            anonymous: true,
            run: None,
            roles: std::sync::Arc::default(),
            groups: std::sync::Arc::default(),
        }
    }

    /// An authenticated principal (what authentication will produce).
    pub fn named(name: impl Into<String>) -> Principal {
        Principal {
            name: name.into(),
            anonymous: false,
            run: None,
            roles: std::sync::Arc::default(),
            groups: std::sync::Arc::default(),
        }
    }

    /// The principal with `roles` beside its own.
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = String>) -> Principal {
        std::sync::Arc::make_mut(&mut self.roles).extend(roles);
        self
    }

    /// The principal in `groups` beside its own.
    pub fn with_groups(mut self, groups: impl IntoIterator<Item = String>) -> Principal {
        std::sync::Arc::make_mut(&mut self.groups).extend(groups);
        self
    }

    /// The groups its identity provider vouches for.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The roles its credentials carry.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_anonymous(&self) -> bool {
        self.anonymous
    }

    /// The executor acting for this principal inside run `run_id` (floe-compute only).
    pub fn in_run(&self, run_id: &str) -> Principal {
        Principal {
            run: Some(run_id.to_owned()),
            ..self.clone()
        }
    }

    /// The principal itself, outside any run.
    pub fn outside_run(&self) -> Principal {
        Principal {
            run: None,
            ..self.clone()
        }
    }

    /// The run this principal acts inside, if any.
    pub fn run(&self) -> Option<&str> {
        self.run.as_deref()
    }
}

/// What an entry point is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// List refs, read one ref, read the reflog.
    ReadRefs,
    /// Read commits, log, diff, entries and content at a ref spec.
    Read,
    CreateRef,
    DeleteRef,
    /// Point a branch at another commit (`floe reset`).
    AssignRef,
    /// Write content (namespaces, tables, views) on a branch.
    Commit,
    Merge,
    CherryPick,
    Revert,
    /// Run the server's maintenance (retention of run branches, records, idempotency).
    Maintain,
    /// Start a run that lands on the ref.
    Run,
    /// Manage the catalog: tokens and the policy.
    Manage,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadRefs => "read refs",
            Action::Read => "read",
            Action::CreateRef => "create ref",
            Action::DeleteRef => "delete ref",
            Action::AssignRef => "assign ref",
            Action::Commit => "commit to",
            Action::Merge => "merge into",
            Action::CherryPick => "cherry-pick onto",
            Action::Revert => "revert on",
            Action::Maintain => "maintain",
            Action::Run => "run on",
            Action::Manage => "manage",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an action is about: a ref, a namespace, both or neither.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub ref_name: Option<&'a RefName>,
    pub namespace: Option<&'a ContentKey>,
}

impl<'a> Target<'a> {
    /// An action on one ref (not on a namespace of it).
    pub fn on_ref(name: &'a RefName) -> Target<'a> {
        Target {
            ref_name: Some(name),
            namespace: None,
        }
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ref_name, self.namespace) {
            (Some(r), Some(n)) => write!(f, "namespace {n} on {r}"),
            (Some(r), None) => write!(f, "ref {r}"),
            (None, Some(n)) => write!(f, "namespace {n}"),
            (None, None) => f.write_str("the catalog"),
        }
    }
}

/// Decides whether a principal may take an action on a target.
pub trait Policy: Send + Sync + fmt::Debug {
    fn allows(&self, principal: &Principal, action: Action, target: Target<'_>) -> bool;

    /// Why an action is refused, beyond who asked what (a protected branch).
    fn why_not(
        &self,
        _principal: &Principal,
        _action: Action,
        _target: Target<'_>,
    ) -> Option<String> {
        None
    }
}

/// The policy until one is configured: everything is allowed.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Policy for AllowAll {
    fn allows(&self, _: &Principal, _: Action, _: Target<'_>) -> bool {
        true
    }
}
