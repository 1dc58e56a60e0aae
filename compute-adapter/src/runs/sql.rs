//! SQL models (DESIGN §5): one `.sql` file is one model, named after the file or by
//! `-- bauplan: name = ...`; other `-- bauplan: key = value` header lines carry what the
//! model decorator takes. Its inputs are the tables its statement reads, found with
//! DataFusion's parser (planning never runs anything). `$name` placeholders become the
//! typed parameter as a SQL literal, outside strings, quoted identifiers and comments.
//!
//! Bauplan's SQL is DuckDB's dialect, which keeps names as written (an alias `AS Total`
//! is the column `Total`) and matches identifiers case-insensitively. A SQL model is
//! planned with DataFusion's identifier normalization off, and before planning an
//! unquoted identifier that matches exactly one input column regardless of case is
//! rewritten to that column's exact name, so `PULocationID` and `pulocationid` both find
//! the column `PULocationID`.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

use datafusion::common::TableReference;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Expr, Ident, Statement, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use super::PlanError;
use super::project::Param;

/// The header keys a SQL model takes (those of the model decorator).
pub const HEADER_KEYS: [&str; 8] = [
    "name",
    "materialization_strategy",
    "partitioned_by",
    "overwrite_filter",
    "cache_strategy",
    "columns",
    "output_schema",
    "internet_access",
];

/// A SQL model's file, read: its headers (value and line) and its statement's text.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFile {
    pub headers: BTreeMap<String, (String, u32)>,
    pub text: String,
}

/// Reads the `-- bauplan:` headers of a SQL file.
pub fn read(file: &str, text: &str) -> Result<SqlFile, Vec<PlanError>> {
    let mut headers = BTreeMap::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let Some(comment) = line.trim_start().strip_prefix("--") else {
            continue;
        };
        let Some(header) = comment.trim_start().strip_prefix("bauplan:") else {
            continue;
        };
        let at = |message: String| PlanError {
            file: file.to_owned(),
            line: Some(line_no),
            message,
        };
        let Some((key, value)) = header.split_once('=') else {
            errors.push(at(format!(
                "a header is `-- bauplan: key = value`, got {:?}",
                header.trim()
            )));
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        if !HEADER_KEYS.contains(&key.as_str()) {
            errors.push(at(format!(
                "unknown header key {key}: a SQL model takes {}",
                HEADER_KEYS.join(", ")
            )));
            continue;
        }
        let value = value
            .trim()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_owned();
        if headers.insert(key.clone(), (value, line_no)).is_some() {
            errors.push(at(format!("header {key} is given twice")));
        }
    }
    if errors.is_empty() {
        Ok(SqlFile {
            headers,
            text: text.to_owned(),
        })
    } else {
        Err(errors)
    }
}

/// A header list value: `[a, b]`, `a, b` or `a`.
pub fn list(value: &str) -> Vec<String> {
    value
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `sql` with each `$name` replaced by parameter `name` as a typed SQL literal. A `$name`
/// inside a string, a quoted identifier or a comment is left as it is. An unknown name is
/// an error naming it and its line.
pub fn substitute(sql: &str, params: &BTreeMap<String, Param>) -> Result<String, (String, u32)> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut line = 1u32;
    let mut i = 0;
    // Copies chars[i..end] as they are.
    let copy = |out: &mut String, from: usize, to: usize, line: &mut u32| {
        for c in &chars[from..to] {
            if *c == '\n' {
                *line += 1;
            }
            out.push(*c);
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let rest = |n: usize| chars.get(i + n).copied();
        if c == '\'' || c == '"' {
            // A string or quoted identifier: to its closing quote (doubled quotes inside).
            let mut j = i + 1;
            while j < chars.len() {
                if chars[j] == c {
                    if chars.get(j + 1) == Some(&c) {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            copy(&mut out, i, end, &mut line);
            i = end;
        } else if c == '-' && rest(1) == Some('-') {
            let end = chars[i..]
                .iter()
                .position(|c| *c == '\n')
                .map_or(chars.len(), |p| i + p);
            copy(&mut out, i, end, &mut line);
            i = end;
        } else if c == '/' && rest(1) == Some('*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .map_or(chars.len(), |j| j + 2);
            copy(&mut out, i, end, &mut line);
            i = end;
        } else if let Some(end) = dollar_quoted(&chars, i) {
            // `$$...$$` or `$tag$...$tag$`: a string, as the parser reads it.
            copy(&mut out, i, end, &mut line);
            i = end;
        } else if c == '$' && rest(1).is_some_and(|n| n.is_ascii_alphabetic() || n == '_') {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            match params.get(&name) {
                Some(p) => out.push_str(&p.value.sql_literal()),
                None => return Err((name, line)),
            }
            i = j;
        } else {
            copy(&mut out, i, i + 1, &mut line);
            i += 1;
        }
    }
    Ok(out)
}

/// The end of a dollar-quoted string starting at `i` (`$$...$$`, `$tag$...$tag$`), if one
/// starts there and is closed.
fn dollar_quoted(chars: &[char], i: usize) -> Option<usize> {
    if chars.get(i) != Some(&'$') {
        return None;
    }
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    if chars.get(j) != Some(&'$') || chars.get(i + 1).is_some_and(char::is_ascii_digit) {
        return None;
    }
    let tag = &chars[i..=j];
    (j + 1..=chars.len().saturating_sub(tag.len()))
        .find(|&k| chars[k..k + tag.len()] == *tag)
        .map(|k| k + tag.len())
}

/// The line a parser error names (`... at Line: 3, Column: 7`).
fn error_line(message: &str) -> Option<u32> {
    let at = message.find("Line: ")? + "Line: ".len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Parses a model's statement: exactly one query (SELECT, WITH, VALUES).
pub fn parse(file: &str, sql: &str) -> Result<DfStatement, PlanError> {
    let at = |line: Option<u32>, message: String| PlanError {
        file: file.to_owned(),
        line,
        message,
    };
    let mut statements =
        DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).map_err(|e| {
            let message = e.strip_backtrace();
            // A statement cut short is reported at its end, on the file's last line.
            let line = error_line(&message).or_else(|| {
                message
                    .contains("EOF")
                    .then(|| u32::try_from(sql.trim_end().lines().count()).unwrap_or(u32::MAX))
            });
            at(line, format!("SQL syntax error: {message}"))
        })?;
    if statements.len() != 1 {
        return Err(at(
            None,
            format!(
                "a SQL model is exactly one query, this file has {} statements",
                statements.len()
            ),
        ));
    }
    let statement = statements.pop_front().expect("one statement");
    let is_query = matches!(&statement, DfStatement::Statement(s) if matches!(s.as_ref(), Statement::Query(_)));
    if !is_query {
        return Err(at(
            None,
            "a SQL model is one query (SELECT, WITH, VALUES): it reads tables and its result is the model's output".to_owned(),
        ));
    }
    Ok(statement)
}

/// The tables a statement reads (common table expressions are not tables), with
/// identifiers normalized as DataFusion plans them.
pub fn tables(file: &str, statement: &DfStatement) -> Result<Vec<TableReference>, PlanError> {
    datafusion::sql::resolve::resolve_table_references(statement, false)
        .map(|(tables, _ctes)| {
            // `range(10)` and the like are table functions, not tables.
            tables
                .into_iter()
                .filter(|t| !matches!(t, TableReference::Bare { table } if table_functions().contains(table.as_ref())))
                .collect()
        })
        .map_err(|e| PlanError {
            file: file.to_owned(),
            line: None,
            message: e.strip_backtrace(),
        })
}

/// The names of DataFusion's table functions (`range`, `generate_series`, ...).
fn table_functions() -> &'static std::collections::HashSet<String> {
    static NAMES: std::sync::LazyLock<std::collections::HashSet<String>> =
        std::sync::LazyLock::new(|| {
            datafusion::prelude::SessionContext::new()
                .state()
                .table_functions()
                .keys()
                .cloned()
                .collect()
        });
    &NAMES
}

/// Rewrites unquoted identifiers that match exactly one of `columns` regardless of case
/// (and not exactly as written, after lowering) to that column, quoted.
pub fn match_columns<'a>(statement: &mut DfStatement, columns: impl IntoIterator<Item = &'a str>) {
    let mut by_lower: HashMap<String, Vec<&str>> = HashMap::new();
    for c in columns {
        let entry = by_lower.entry(c.to_lowercase()).or_default();
        if !entry.contains(&c) {
            entry.push(c);
        }
    }
    let fix = |ident: &mut Ident| {
        if ident.quote_style.is_some() {
            return;
        }
        let lower = ident.value.to_lowercase();
        if let Some([only]) = by_lower.get(&lower).map(Vec::as_slice)
            && *only != ident.value
        {
            *ident = Ident::with_quote('"', *only);
        }
    };
    if let DfStatement::Statement(s) = statement {
        let _ = visit_expressions_mut(s.as_mut(), |expr| {
            match expr {
                Expr::Identifier(ident) => fix(ident),
                Expr::CompoundIdentifier(idents) => {
                    if let Some(last) = idents.last_mut() {
                        fix(last);
                    }
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::project::{ParamType, ParamValue};

    fn params() -> BTreeMap<String, Param> {
        BTreeMap::from([
            (
                "city".to_owned(),
                Param {
                    kind: ParamType::Str,
                    value: ParamValue::Str("O'Hare'; DROP TABLE x; --".into()),
                },
            ),
            (
                "n".to_owned(),
                Param {
                    kind: ParamType::Int,
                    value: ParamValue::Int(3),
                },
            ),
        ])
    }

    #[test]
    fn headers_are_read_and_checked() {
        let f = read("m.sql", "-- bauplan: materialization_strategy = REPLACE\n--bauplan: name=trips_clean\n-- an ordinary comment\nselect 1").unwrap();
        assert_eq!(
            f.headers["materialization_strategy"],
            ("REPLACE".to_owned(), 1)
        );
        assert_eq!(f.headers["name"], ("trips_clean".to_owned(), 2));
        let bad = read("m.sql", "select 1\n-- bauplan: colour = red\n").unwrap_err();
        assert_eq!((bad[0].file.as_str(), bad[0].line), ("m.sql", Some(2)));
        assert_eq!(list("[a, 'b' ,c]"), vec!["a", "b", "c"]);
    }

    #[test]
    fn parameters_become_literals_never_text() {
        let sql = "select '$city' as s, \"$n\", $n + 1 -- $city\n/* $city */ where c = $city";
        let out = substitute(sql, &params()).unwrap();
        assert_eq!(
            out,
            "select '$city' as s, \"$n\", 3 + 1 -- $city\n/* $city */ where c = 'O''Hare''; DROP TABLE x; --'"
        );
        // The statement stays one query with one string literal.
        parse("m.sql", &out).unwrap();
        assert_eq!(
            substitute("select 1\n from t where x = $nope", &params()),
            Err(("nope".to_owned(), 2))
        );
    }

    #[test]
    fn inputs_are_the_tables_read_not_the_ctes() {
        let s = parse(
            "m.sql",
            "with a as (select * from Trips) select * from a join taxi.zones z on true, range(3)",
        )
        .unwrap();
        let t: Vec<String> = tables("m.sql", &s)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(t, vec!["Trips", "taxi.zones"]);
        let e = parse("m.sql", "select 1\nfrom t where").unwrap_err();
        assert!(e.line.is_some(), "{e}");
        assert!(
            parse("m.sql", "drop table t")
                .unwrap_err()
                .message
                .contains("one query")
        );
    }

    #[test]
    fn identifiers_match_columns_regardless_of_case() {
        let mut s = parse(
            "m.sql",
            "select pulocationid, PULocationID as X, t.Fare, other from t",
        )
        .unwrap();
        match_columns(&mut s, ["PULocationID", "fare"]);
        assert_eq!(
            s.to_string(),
            "SELECT \"PULocationID\", PULocationID AS X, t.\"fare\", other FROM t"
        );
    }
}
