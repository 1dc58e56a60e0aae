//! The project file (`bauplan_project.yml` or `.yaml`, Bauplan-compatible; DESIGN §5
//! "Projects") and a run's typed parameters.
//!
//! ```yaml
//! project: {id: 1f0c..., name: taxi}
//! parameters:
//!   min_trips: {type: int, default: 10, description: ...}
//!   api_key: {type: secret, required: true}
//! defaults: {namespace: taxi}
//! ```
//! Unknown keys are tolerated. A parameter's value comes from `--param k=v` (parsed by the
//! parameter's type), else for a secret from the server's `FLOE_SECRET_<NAME>`, else from
//! its default; a required parameter without one, an unknown `--param` and a value that
//! does not parse are planning errors naming the project file and the parameter's line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_norway::Value;

use super::PlanError;
use crate::limits::RUN_PARAMETERS_MAX;

/// The names a project file may have, in the order they are looked for.
pub const PROJECT_FILES: [&str; 2] = ["bauplan_project.yml", "bauplan_project.yaml"];

/// What a secret looks like wherever a run shows its parameters.
pub const MASK: &str = "********";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Str,
    Int,
    Float,
    Bool,
    Secret,
}

impl ParamType {
    fn parse(text: &str) -> Option<ParamType> {
        match text.to_ascii_lowercase().as_str() {
            "str" | "string" => Some(ParamType::Str),
            "int" | "integer" => Some(ParamType::Int),
            "float" | "double" => Some(ParamType::Float),
            "bool" | "boolean" => Some(ParamType::Bool),
            "secret" => Some(ParamType::Secret),
            _ => None,
        }
    }
}

/// A parameter's value, typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl ParamValue {
    /// Parses `text` as a value of `kind`.
    pub fn parse(kind: ParamType, text: &str) -> Result<ParamValue, String> {
        match kind {
            ParamType::Str | ParamType::Secret => Ok(ParamValue::Str(text.to_owned())),
            ParamType::Int => text
                .trim()
                .parse()
                .map(ParamValue::Int)
                .map_err(|_| format!("{text:?} is not an int")),
            ParamType::Float => match text.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(ParamValue::Float(f)),
                _ => Err(format!("{text:?} is not a finite float")),
            },
            ParamType::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(ParamValue::Bool(true)),
                "false" | "0" | "no" => Ok(ParamValue::Bool(false)),
                _ => Err(format!("{text:?} is not a bool (true or false)")),
            },
        }
    }

    /// The value as a SQL literal: strings quoted with `'` doubled, never raw text.
    pub fn sql_literal(&self) -> String {
        match self {
            ParamValue::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
            ParamValue::Int(i) => i.to_string(),
            // `{:?}` keeps a decimal point (1.0, not 1): the literal stays a float.
            ParamValue::Float(f) => format!("{f:?}"),
            ParamValue::Str(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }

    /// A YAML scalar as a value of `kind`.
    fn from_yaml(kind: ParamType, value: &Value) -> Result<ParamValue, String> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => return Err(format!("{other:?} is not a scalar")),
        };
        ParamValue::parse(kind, &text)
    }
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ParamValue>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The line that declares it (for errors).
    #[serde(skip)]
    pub line: Option<u32>,
}

/// A parameter's value for one run, with its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub kind: ParamType,
    pub value: ParamValue,
}

impl Param {
    /// The value as shown in records, logs and answers: secrets masked.
    pub fn shown(&self) -> serde_json::Value {
        match (&self.kind, &self.value) {
            (ParamType::Secret, _) => serde_json::Value::String(MASK.to_owned()),
            (_, v) => serde_json::to_value(v).unwrap_or_default(),
        }
    }
}

/// The values of a run's secret parameters, to mask wherever text about the run is shown
/// (its log, its record's errors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn of(params: &BTreeMap<String, Param>) -> Secrets {
        let mut values: Vec<String> = params
            .values()
            .filter(|p| p.kind == ParamType::Secret)
            .filter_map(|p| match &p.value {
                ParamValue::Str(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
            .collect();
        // Longest first: a secret inside another is masked with it.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Secrets(values)
    }

    /// `text` with every secret value replaced by the mask.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

/// A project file, read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Project {
    /// The file's path in the archive.
    pub file: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub parameters: BTreeMap<String, ParamSpec>,
    /// `defaults.namespace`.
    pub namespace: Option<String>,
}

fn error(file: &str, line: Option<u32>, message: impl Into<String>) -> PlanError {
    PlanError {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

/// The first line of `text` that declares `key:` (after indentation), 1-based.
fn line_of(text: &str, key: &str) -> Option<u32> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .and_then(|n| u32::try_from(n + 1).ok())
}

impl Project {
    /// Reads a project file (`file` is its path, for errors).
    pub fn parse(file: &str, text: &str) -> Result<Project, Vec<PlanError>> {
        let root: Value = serde_norway::from_str(text).map_err(|e| {
            let line = e.location().and_then(|l| u32::try_from(l.line()).ok());
            vec![error(file, line, format!("it is not valid YAML: {e}"))]
        })?;
        let mut errors = Vec::new();
        let mut project = Project {
            file: file.to_owned(),
            ..Project::default()
        };
        let text_of = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if let Some(p) = root.get("project") {
            project.id = p.get("id").and_then(text_of);
            project.name = p.get("name").and_then(text_of);
        }
        if let Some(d) = root.get("defaults") {
            project.namespace = d.get("namespace").and_then(text_of);
        }
        match root.get("parameters") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(map)) => {
                if map.len() > RUN_PARAMETERS_MAX {
                    errors.push(error(
                        file,
                        line_of(text, "parameters"),
                        format!("a project declares at most {RUN_PARAMETERS_MAX} parameters"),
                    ));
                }
                for (name, spec) in map {
                    let Some(name) = name.as_str() else {
                        errors.push(error(
                            file,
                            line_of(text, "parameters"),
                            "a parameter's name must be a string",
                        ));
                        continue;
                    };
                    let line = line_of(text, name);
                    match parse_spec(spec) {
                        Ok(mut spec) => {
                            spec.line = line;
                            project.parameters.insert(name.to_owned(), spec);
                        }
                        Err(why) => {
                            errors.push(error(file, line, format!("parameter {name}: {why}")))
                        }
                    }
                }
            }
            Some(_) => errors.push(error(
                file,
                line_of(text, "parameters"),
                "parameters must be a mapping of name to {type, default, required, description}",
            )),
        }
        if errors.is_empty() {
            Ok(project)
        } else {
            Err(errors)
        }
    }

    /// Each parameter's value for a run: `given` (`--param`) parsed by type, else a
    /// secret from `secret_env(NAME)`, else the default. Unset optional parameters have no
    /// value (a model that uses one fails to plan).
    pub fn resolve(
        &self,
        given: &BTreeMap<String, String>,
        secret_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, Param>, Vec<PlanError>> {
        let mut errors = Vec::new();
        let mut out = BTreeMap::new();
        for name in given.keys() {
            if !self.parameters.contains_key(name) {
                let known: Vec<&str> = self.parameters.keys().map(String::as_str).collect();
                errors.push(error(
                    &self.file,
                    None,
                    format!(
                        "unknown parameter {name}: the project declares {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        for (name, spec) in &self.parameters {
            let env = || {
                (spec.kind == ParamType::Secret)
                    .then(|| secret_env(&format!("FLOE_SECRET_{}", name.to_ascii_uppercase())))
                    .flatten()
            };
            let value = match given.get(name).cloned().or_else(env) {
                Some(text) => match ParamValue::parse(spec.kind, &text) {
                    Ok(v) => Some(v),
                    Err(why) => {
                        errors.push(error(
                            &self.file,
                            spec.line,
                            format!("parameter {name}: {why}"),
                        ));
                        continue;
                    }
                },
                None => spec.default.clone(),
            };
            match value {
                Some(value) => {
                    out.insert(
                        name.clone(),
                        Param {
                            kind: spec.kind,
                            value,
                        },
                    );
                }
                None if spec.required => errors.push(error(
                    &self.file,
                    spec.line,
                    format!(
                        "parameter {name} is required and has no value: pass --param {name}=...{}",
                        if spec.kind == ParamType::Secret {
                            format!(
                                " or set FLOE_SECRET_{} on the server",
                                name.to_ascii_uppercase()
                            )
                        } else {
                            String::new()
                        }
                    ),
                )),
                None => {}
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

fn parse_spec(spec: &Value) -> Result<ParamSpec, String> {
    let Value::Mapping(_) = spec else {
        return Err("declare it as {type: str|int|float|bool|secret, default: ...}".to_owned());
    };
    let kind = match spec.get("type") {
        None => return Err("it has no type (str, int, float, bool or secret)".to_owned()),
        Some(t) => t
            .as_str()
            .and_then(ParamType::parse)
            .ok_or_else(|| format!("type {t:?} is not one of str, int, float, bool, secret"))?,
    };
    let default = match spec.get("default") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(ParamValue::from_yaml(kind, v).map_err(|why| format!("its default: {why}"))?)
        }
    };
    let required = match spec.get("required") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("required must be true or false, got {other:?}")),
    };
    let description = spec
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(ParamSpec {
        kind,
        default,
        required,
        description,
        line: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "project:\n  id: 7d3e\n  name: taxi\n  extra: tolerated\nparameters:\n  min_trips:\n    type: int\n    default: 10\n  rate:\n    type: float\n  api_key:\n    type: secret\n    required: true\ndefaults:\n  namespace: taxi\nsomething_else: [1, 2]\n";

    #[test]
    fn a_project_file_reads_with_typed_parameters() {
        let p = Project::parse("bauplan_project.yml", FILE).unwrap();
        assert_eq!(p.id.as_deref(), Some("7d3e"));
        assert_eq!(p.name.as_deref(), Some("taxi"));
        assert_eq!(p.namespace.as_deref(), Some("taxi"));
        assert_eq!(p.parameters["min_trips"].default, Some(ParamValue::Int(10)));
        assert_eq!(p.parameters["rate"].line, Some(9));
        let env = |k: &str| (k == "FLOE_SECRET_API_KEY").then(|| "s3cr3t".to_owned());
        let given = BTreeMap::from([("rate".to_owned(), "0.5".to_owned())]);
        let values = p.resolve(&given, &env).unwrap();
        assert_eq!(values["min_trips"].value, ParamValue::Int(10));
        assert_eq!(values["rate"].value, ParamValue::Float(0.5));
        assert_eq!(values["api_key"].value, ParamValue::Str("s3cr3t".into()));
        assert_eq!(values["api_key"].shown(), serde_json::json!(MASK));
    }

    #[test]
    fn parameter_errors_name_the_file_and_line() {
        let p = Project::parse("bauplan_project.yml", FILE).unwrap();
        let none = |_: &str| None;
        let given = BTreeMap::from([
            ("min_trips".to_owned(), "ten".to_owned()),
            ("nope".to_owned(), "1".to_owned()),
        ]);
        let errors = p.resolve(&given, &none).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|e| e.contains("unknown parameter nope")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("bauplan_project.yml:6") && e.contains("not an int")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains(":11") && e.contains("api_key is required")),
            "{text:?}"
        );
        let bad = Project::parse("p.yml", "parameters:\n  x:\n    type: decimal\n").unwrap_err();
        assert!(
            bad[0].to_string().starts_with("p.yml:2: parameter x: type"),
            "{}",
            bad[0]
        );
        let broken = Project::parse("p.yml", "project: [\n").unwrap_err();
        assert!(broken[0].line.is_some(), "{}", broken[0]);
    }

    #[test]
    fn literals_are_typed_and_quoted() {
        assert_eq!(ParamValue::Str("it's".into()).sql_literal(), "'it''s'");
        assert_eq!(ParamValue::Float(1.0).sql_literal(), "1.0");
        assert_eq!(ParamValue::Int(-3).sql_literal(), "-3");
        assert_eq!(ParamValue::Bool(true).sql_literal(), "TRUE");
        assert!(ParamValue::parse(ParamType::Float, "inf").is_err());
    }
}
