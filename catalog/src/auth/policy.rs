//! The catalog's own rules (issue 19): roles of `{refs = [globs], allow = [permissions]}`,
//! principals mapped to roles by name, protected branches; deny by default. The document
//! is TOML, kept in the meta keyspace (`auth/policy`) so that every server sees the same
//! one, and replaced whole (`floe policy set`).
//!
//! ```toml
//! protected = ["main", "release/*"]
//! [roles.dev]
//! rules = [
//!   { refs = ["**"], allow = ["read"] },
//!   { refs = ["dev/**", "feature/**"], allow = ["write", "create", "delete", "run"] },
//!   { refs = ["main"], allow = ["merge"] },
//! ]
//! [principals]
//! alice = ["dev"]
//! [groups]
//! data-eng = ["dev"]   # values of the OIDC groups claim (`--oidc-groups-claim`)
//! ```
//!
//! `*` matches within one `/` segment, `**` across segments. The role `admin` is built in:
//! every permission on every ref (the bootstrap token's principal has it).

use std::collections::BTreeMap;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{Action, Policy, Principal, Target};

/// What a rule allows on the refs it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Perm {
    /// Refs, history, tables and queries at the ref.
    Read,
    /// Commits, every Iceberg write, imports; cherry-picks and reverts onto it.
    Write,
    /// Merges into it.
    Merge,
    /// Creating refs with that name.
    Create,
    /// Deleting refs with that name.
    Delete,
    /// Starting runs that land on it.
    Run,
    /// Assigning and resetting it, writing past its protection; on `**`: tokens, the
    /// policy, maintenance.
    Manage,
}

/// A policy document, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Branches only merges land on (and `manage` writes past).
    #[serde(default)]
    pub protected: Vec<String>,
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// Principal name -> its roles.
    #[serde(default)]
    pub principals: BTreeMap<String, Vec<String>>,
    /// Group (a value of the OIDC groups claim) -> its members' roles.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub refs: Vec<String>,
    pub allow: Vec<Perm>,
}

/// A policy document that does not parse or names what is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the policy {0}")]
pub struct PolicyError(pub String);

/// The built-in role with every permission on every ref.
pub const ADMIN_ROLE: &str = "admin";

impl PolicyDoc {
    /// Parses and checks a document: every role a principal names exists, every glob is
    /// well formed.
    pub fn parse(text: &str) -> Result<PolicyDoc, PolicyError> {
        let doc: PolicyDoc = toml::from_str(text)
            .map_err(|e| PolicyError(format!("does not parse: {}", e.message())))?;
        if doc.roles.contains_key(ADMIN_ROLE) {
            return Err(PolicyError(format!(
                "defines the role {ADMIN_ROLE:?}, which is built in (every permission on every ref); name yours otherwise"
            )));
        }
        for (who, roles) in doc.principals.iter().chain(&doc.groups) {
            for role in roles {
                if role != ADMIN_ROLE && !doc.roles.contains_key(role) {
                    return Err(PolicyError(format!(
                        "maps {who} to the role {role:?}, which it does not define"
                    )));
                }
            }
        }
        let globs = doc.protected.iter().chain(
            doc.roles
                .values()
                .flat_map(|r| r.rules.iter().flat_map(|r| &r.refs)),
        );
        for glob in globs {
            if glob.is_empty() || glob.split('/').any(|s| s.is_empty()) {
                return Err(PolicyError(format!(
                    "has the ref pattern {glob:?}: segments between `/` may not be empty"
                )));
            }
        }
        Ok(doc)
    }

    /// The document as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The roles of a principal: those its name and its groups map to, and those its
    /// credentials carry.
    fn roles_of<'a>(&'a self, principal: &'a Principal) -> impl Iterator<Item = &'a str> {
        let named = if principal.is_anonymous() {
            None
        } else {
            self.principals.get(principal.name())
        };
        let grouped = principal
            .groups()
            .iter()
            .filter_map(|g| self.groups.get(g))
            .flatten();
        named
            .into_iter()
            .flatten()
            .chain(grouped)
            .map(String::as_str)
            .chain(principal.roles().iter().map(String::as_str))
    }

    /// Whether the principal holds `perm` on `name` (`None`: on every ref, `**` alone).
    /// `manage` on a ref holds every permission on it.
    fn holds(&self, principal: &Principal, perm: Perm, name: Option<&str>) -> bool {
        self.roles_of(principal).any(|role| {
            if role == ADMIN_ROLE {
                return true;
            }
            self.roles.get(role).is_some_and(|r| {
                r.rules.iter().any(|rule| {
                    (rule.allow.contains(&perm) || rule.allow.contains(&Perm::Manage))
                        && rule.refs.iter().any(|g| match name {
                            Some(name) => glob(g, name),
                            None => g == "**",
                        })
                })
            })
        })
    }

    /// Whether the principal holds `perm` on some ref.
    fn holds_anywhere(&self, principal: &Principal, perm: Perm) -> bool {
        self.roles_of(principal).any(|role| {
            role == ADMIN_ROLE
                || self.roles.get(role).is_some_and(|r| {
                    r.rules.iter().any(|rule| {
                        rule.allow.contains(&perm) || rule.allow.contains(&Perm::Manage)
                    })
                })
        })
    }

    fn protected(&self, name: &str) -> bool {
        self.protected.iter().any(|g| glob(g, name))
    }

    /// The policy's answer for an action, where run workers are not confined (starting a
    /// run is then a manager's: code a run executes could read what the server can).
    pub fn allows(&self, principal: &Principal, action: Action, target: Target<'_>) -> bool {
        self.decide(principal, action, target, Perm::Manage)
    }

    /// The policy's answer for an action, where run workers are confined (`run` starts
    /// runs).
    pub fn allows_confined(
        &self,
        principal: &Principal,
        action: Action,
        target: Target<'_>,
    ) -> bool {
        self.decide(principal, action, target, Perm::Run)
    }

    /// `run_needs`: the permission that starts a run.
    fn decide(
        &self,
        principal: &Principal,
        action: Action,
        target: Target<'_>,
        run_needs: Perm,
    ) -> bool {
        let name = target.ref_name.map(|r| r.as_str());
        // A run's executor writes its own branch, and nothing else.
        if let Some(run) = principal.run() {
            let own = name.is_some_and(|n| {
                n.strip_prefix(floe_commits::name::RUN_BRANCH_PREFIX) == Some(run)
            });
            return match action {
                Action::Commit | Action::CreateRef | Action::DeleteRef => own,
                Action::Read | Action::ReadRefs => {
                    own || self.allows(&principal.outside_run(), action, target)
                }
                _ => false,
            };
        }
        let perm = match action {
            Action::ReadRefs | Action::Read => Perm::Read,
            Action::Commit | Action::CherryPick | Action::Revert => Perm::Write,
            Action::Merge => Perm::Merge,
            Action::CreateRef => Perm::Create,
            Action::DeleteRef => Perm::Delete,
            Action::Run => run_needs,
            Action::AssignRef | Action::Maintain | Action::Manage => Perm::Manage,
        };
        match (action, name) {
            // Lists and listings: something readable somewhere.
            (Action::ReadRefs, None) => self.holds_anywhere(principal, Perm::Read),
            // Only merges land on a protected branch, unless one may manage it.
            (
                Action::Commit
                | Action::CherryPick
                | Action::Revert
                | Action::Run
                | Action::CreateRef
                | Action::DeleteRef
                | Action::AssignRef,
                Some(n),
            ) if self.protected(n) => self.holds(principal, Perm::Manage, Some(n)),
            (_, name) => self.holds(principal, perm, name),
        }
    }
}

/// Whether `name` matches `pattern`: `*` within one `/` segment, `**` any segments
/// (none included). Allocation-free: it runs on every authorized request.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, p_rest) = first(pattern);
    if p == "**" {
        let Some(p_rest) = p_rest else {
            return true;
        };
        let mut at = Some(name);
        while let Some(rest) = at {
            if glob(p_rest, rest) {
                return true;
            }
            at = rest.split_once('/').map(|(_, r)| r);
        }
        return false;
    }
    let (n, n_rest) = first(name);
    segment(p, n)
        && match (p_rest, n_rest) {
            (None, None) => true,
            (Some(p_rest), Some(n_rest)) => glob(p_rest, n_rest),
            // A trailing `**` matches no segment too.
            (Some(p_rest), None) => p_rest == "**",
            (None, Some(_)) => false,
        }
}

/// The first `/` segment, and the rest after it.
fn first(path: &str) -> (&str, Option<&str>) {
    match path.split_once('/') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    }
}

/// One segment against a pattern of literal text and `*`s.
fn segment(pattern: &str, text: &str) -> bool {
    match pattern.find('*') {
        None => pattern == text,
        Some(at) => {
            let (head, tail) = (&pattern[..at], &pattern[at + 1..]);
            text.starts_with(head)
                && (head.len()..=text.len())
                    .any(|i| text.is_char_boundary(i) && segment(tail, &text[i..]))
        }
    }
}

/// The catalog's rules as the policy of its `authorize`: the document in force, replaced
/// whole when a new one is set.
#[derive(Debug, Default)]
pub struct Rules {
    doc: RwLock<PolicyDoc>,
    /// Whether run workers are confined (`run` starts runs; else only `manage` does).
    confined: std::sync::atomic::AtomicBool,
}

impl Rules {
    pub fn new(doc: PolicyDoc) -> Rules {
        Rules {
            doc: RwLock::new(doc),
            confined: false.into(),
        }
    }

    /// Says run workers are confined (the server probed it at start).
    pub fn confine_runs(&self) {
        self.confined
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn replace(&self, doc: PolicyDoc) {
        *self.doc.write() = doc;
    }

    pub fn current(&self) -> PolicyDoc {
        self.doc.read().clone()
    }
}

impl Policy for Rules {
    fn allows(&self, principal: &Principal, action: Action, target: Target<'_>) -> bool {
        let doc = self.doc.read();
        if self.confined.load(std::sync::atomic::Ordering::Relaxed) {
            doc.allows_confined(principal, action, target)
        } else {
            doc.allows(principal, action, target)
        }
    }

    fn why_not(&self, _: &Principal, action: Action, target: Target<'_>) -> Option<String> {
        let name = target.ref_name?.as_str();
        let writes = matches!(
            action,
            Action::Commit | Action::CherryPick | Action::Revert | Action::Run
        );
        (writes && self.doc.read().protected(name))
            .then(|| format!("{name} is protected: commit on a branch and merge"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_commits::RefName;

    const DOC: &str = r#"
protected = ["main", "release/*"]
[roles.reader]
rules = [{ refs = ["**"], allow = ["read"] }]
[roles.dev]
rules = [
  { refs = ["**"], allow = ["read"] },
  { refs = ["dev/**", "feature/**"], allow = ["write", "create", "delete", "run"] },
  { refs = ["main"], allow = ["merge"] },
]
[principals]
alice = ["dev"]
rita = ["reader"]
boss = ["admin"]
"#;

    fn on(doc: &PolicyDoc, who: &Principal, action: Action, name: &str) -> bool {
        let name = RefName::parse(name).unwrap();
        doc.allows(who, action, Target::on_ref(&name))
    }

    #[test]
    fn globs_match_within_and_across_segments() {
        assert!(glob("main", "main"));
        assert!(!glob("main", "main2"));
        assert!(glob("release/*", "release/1.0"));
        assert!(!glob("release/*", "release/1.0/hotfix"));
        assert!(glob("dev/**", "dev/a/b"));
        assert!(glob("dev/**", "dev"));
        assert!(glob("**", "anything/at/all"));
        assert!(glob("feat-*-x", "feat-123-x"));
        assert!(!glob("feat-*-x", "feat-123-y"));
        assert!(glob("*/tmp", "a/tmp"));
    }

    #[test]
    fn roles_allow_what_their_rules_say_and_nothing_else() {
        let doc = PolicyDoc::parse(DOC).unwrap();
        let alice = Principal::named("alice");
        let rita = Principal::named("rita");
        let nobody = Principal::named("mallory");
        let anonymous = Principal::anonymous();
        assert!(on(&doc, &alice, Action::Commit, "dev/x"));
        assert!(on(&doc, &alice, Action::CreateRef, "feature/y"));
        // `run` starts runs where workers are confined, and is a manager's where not.
        assert!(!on(&doc, &alice, Action::Run, "dev/x"));
        assert!(on(&doc, &Principal::named("boss"), Action::Run, "dev/x"));
        let confined = |who: &str, name: &str| {
            let name = RefName::parse(name).unwrap();
            doc.allows_confined(&Principal::named(who), Action::Run, Target::on_ref(&name))
        };
        assert!(confined("alice", "dev/x"));
        assert!(!confined("alice", "main"));
        assert!(!confined("rita", "dev/x"));
        assert!(on(&doc, &alice, Action::Merge, "main"));
        assert!(on(&doc, &alice, Action::Read, "main"));
        assert!(!on(&doc, &alice, Action::CreateRef, "other"));
        assert!(!on(&doc, &alice, Action::AssignRef, "dev/x"));
        assert!(on(&doc, &rita, Action::Read, "dev/x"));
        assert!(!on(&doc, &rita, Action::Commit, "dev/x"));
        assert!(!on(&doc, &nobody, Action::Read, "main"));
        assert!(!on(&doc, &anonymous, Action::Read, "main"));
        // Lists need something readable; a bare hash needs read on `**`.
        assert!(doc.allows(&rita, Action::ReadRefs, Target::default()));
        assert!(doc.allows(&rita, Action::Read, Target::default()));
        assert!(!doc.allows(&nobody, Action::ReadRefs, Target::default()));
        assert!(!doc.allows(&alice, Action::Manage, Target::default()));
    }

    #[test]
    fn only_merges_land_on_protected_branches_unless_one_manages_them() {
        let doc = PolicyDoc::parse(DOC).unwrap();
        let alice = Principal::named("alice");
        let boss = Principal::named("boss");
        for action in [
            Action::Commit,
            Action::Run,
            Action::Revert,
            Action::DeleteRef,
            Action::CreateRef,
        ] {
            assert!(!on(&doc, &alice, action, "main"), "{action:?}");
        }
        assert!(on(&doc, &alice, Action::Merge, "main"));
        assert!(on(&doc, &boss, Action::Commit, "main"));
        assert!(on(&doc, &boss, Action::Commit, "release/2"));
        assert!(doc.allows(&boss, Action::Manage, Target::default()));
        // `manage` on refs holds every permission on them, protected or not.
        let keeper = PolicyDoc::parse(
            "protected = [\"release/*\"]\n[roles.k]\nrules = [{ refs = [\"release/**\"], allow = [\"manage\"] }]\n[principals]\nkay = [\"k\"]\n",
        )
        .unwrap();
        let kay = Principal::named("kay");
        for name in ["release/1", "release/a/b"] {
            for action in [
                Action::Commit,
                Action::Read,
                Action::DeleteRef,
                Action::Merge,
            ] {
                assert!(on(&keeper, &kay, action, name), "{action:?} {name}");
            }
        }
        assert!(!on(&keeper, &kay, Action::Read, "main"));
        // A token's roles count as the name's do.
        let carried = Principal::named("svc").with_roles(["dev".to_owned()]);
        assert!(on(&doc, &carried, Action::Commit, "dev/svc"));
        // So do the roles its groups map to, and only those.
        let grouped = PolicyDoc::parse(&format!("{DOC}[groups]\nengineers = [\"dev\"]\n")).unwrap();
        let member = Principal::named("oidc|42").with_groups(["engineers".to_owned()]);
        let outsider = Principal::named("oidc|43").with_groups(["sales".to_owned()]);
        assert!(on(&grouped, &member, Action::Commit, "dev/x"));
        assert!(!on(&grouped, &outsider, Action::Read, "dev/x"));
        let ghost = PolicyDoc::parse("[groups]\nengineers = [\"ghost\"]\n").unwrap_err();
        assert!(ghost.to_string().contains("ghost"), "{ghost}");
    }

    #[test]
    fn a_runs_executor_writes_its_own_branch_only() {
        let doc = PolicyDoc::parse(DOC).unwrap();
        let executor = Principal::named("alice").in_run("r1");
        assert!(on(&doc, &executor, Action::Commit, "floe-run/r1"));
        assert!(!on(&doc, &executor, Action::Commit, "floe-run/r2"));
        assert!(!on(&doc, &executor, Action::Commit, "dev/x"));
        assert!(on(&doc, &executor, Action::Read, "main"));
        assert!(!on(&doc, &executor, Action::Merge, "main"));
    }

    #[test]
    fn a_document_that_names_what_it_does_not_define_is_refused() {
        let unknown = PolicyDoc::parse("[principals]\nbob = [\"ghost\"]\n").unwrap_err();
        assert!(unknown.to_string().contains("ghost"), "{unknown}");
        let admin = PolicyDoc::parse("[roles.admin]\nrules = []\n").unwrap_err();
        assert!(admin.to_string().contains("built in"), "{admin}");
        let bad = PolicyDoc::parse("protected = [\"a//b\"]").unwrap_err();
        assert!(bad.to_string().contains("a//b"), "{bad}");
        let typo = PolicyDoc::parse("[roles.x]\nrulez = []\n").unwrap_err();
        assert!(typo.to_string().contains("rulez"), "{typo}");
        let perm =
            PolicyDoc::parse("[roles.x]\nrules = [{ refs = [\"**\"], allow = [\"fly\"] }]\n")
                .unwrap_err();
        assert!(perm.to_string().contains("fly"), "{perm}");
        // An empty document denies everything.
        let empty = PolicyDoc::parse("").unwrap();
        assert!(!on(&empty, &Principal::named("x"), Action::Read, "main"));
    }
}
