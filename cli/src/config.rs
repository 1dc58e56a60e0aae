//! The CLI's own state: the checked-out branch per server, in
//! `$FLOE_CONFIG_DIR/config.toml` (default `~/.config/floe/config.toml`):
//!
//! ```toml
//! [servers."http://127.0.0.1:8181"]
//! branch = "dev"
//! token = "floe_pat_..."   # used when neither --token nor FLOE_TOKEN is given
//! ```
//!
//! A server with no entry has `main` checked out. The file is rewritten whole through a
//! temporary file and a rename, so a crash never leaves half a file.

use std::path::PathBuf;

use toml::{Table, Value};

pub const DEFAULT_BRANCH: &str = "main";

#[derive(Debug)]
pub struct Config {
    path: PathBuf,
    table: Table,
}

impl Config {
    pub fn load() -> Result<Config, String> {
        let dir = match std::env::var_os("FLOE_CONFIG_DIR") {
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("HOME") {
                Some(h) => PathBuf::from(h).join(".config").join("floe"),
                None => PathBuf::from(".floe"),
            },
        };
        let path = dir.join("config.toml");
        let table = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .parse::<Table>()
                .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Table::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Config { path, table })
    }

    /// The checked-out branch for a server.
    pub fn branch(&self, server: &str) -> String {
        self.table
            .get("servers")
            .and_then(|s| s.get(server))
            .and_then(|s| s.get("branch"))
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_BRANCH)
            .to_owned()
    }

    /// The token kept for a server, if any (`token = "..."` in its table).
    pub fn token(&self, server: &str) -> Option<String> {
        self.table
            .get("servers")
            .and_then(|s| s.get(server))
            .and_then(|s| s.get("token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    pub fn set_branch(&mut self, server: &str, branch: &str) -> Result<(), String> {
        let servers = self
            .table
            .entry("servers")
            .or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(servers) = servers else {
            return Err(format!("{}: `servers` is not a table", self.path.display()));
        };
        let entry = servers
            .entry(server)
            .or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(entry) = entry else {
            return Err(format!(
                "{}: servers.{server:?} is not a table",
                self.path.display()
            ));
        };
        entry.insert("branch".to_owned(), Value::String(branch.to_owned()));
        self.save()
    }

    fn save(&self) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let text = toml::to_string(&self.table).map_err(|e| e.to_string())?;
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}
