//! The read figures of the Iceberg bench (1 and 2): loadTable driven by wrk, each against
//! the trivial axum server answering the very bytes floe answered (captured from floe
//! first) or a tiny body, at the same connection count, in alternating rounds of the same
//! run. The rows give the ratio floe / trivial and both sides' CPU.

use std::time::Duration;

use crate::Bench;
use crate::support::server::TINY_BODY;
use crate::support::wrk::{self, Load, Run, Series};
use crate::support::{Row, ratio, us};
use crate::table::Table;

/// Connections of the main read figures.
const CONNECTIONS_MANY: usize = 16;
/// Rounds of the 16-connection comparisons (each load once per round).
const ROUNDS_MANY: usize = 3;
/// Rounds of the 1-connection latency comparisons.
const ROUNDS_ONE: usize = 5;
/// floe's config answer, a config-sized read.
const CONFIG_PATH: &str = "/iceberg/v1/config?warehouse=main";

impl Bench {
    fn floe<'a>(&'a self, path: &'a str, connections: usize, seconds: u64) -> Load<'a> {
        Load::get(&self.server.base, path, connections, seconds).server(self.pid())
    }
    fn trivial<'a>(&'a self, path: &'a str, connections: usize, seconds: u64) -> Load<'a> {
        Load::get(&self.trivial.base, path, connections, seconds)
    }
}

/// Every run of load `i` (on `connections`) answered `sizes[i]` bytes of body.
fn sizes<const N: usize>(
    what: [&str; N],
    sizes: [usize; N],
    connections: usize,
) -> impl Fn(usize, &Run) {
    move |i, r| {
        r.expect_body(what[i], sizes[i], connections);
    }
}

fn rate_cell(s: &Series, unit: &str) -> String {
    format!("{:.0} {unit}/s (rounds: {})", s.rate(), s.rates())
}

/// 1a, 1b, 1e, 1f: loadTable of a small table, floe's config and health at 16 connections,
/// against the trivial handler answering the same bytes and a tiny body.
pub fn many_connections(b: &Bench, t: &Table) -> Vec<Row> {
    let body = t.load(&b.c);
    let same = b.trivial.add(body.clone());
    let config = b.c.get(CONFIG_PATH, 200);
    let health = b.c.get("/health", 200);
    let path = t.path();
    let (c, secs) = (CONNECTIONS_MANY, b.s.secs(5));
    let [floe, same_r, tiny, config_r, health_r] = wrk::rounds(
        ROUNDS_MANY,
        [
            b.floe(&path, c, secs),
            b.trivial(&same, c, secs),
            b.trivial("/tiny", c, secs),
            b.floe(CONFIG_PATH, c, secs),
            b.floe("/health", c, secs),
        ],
        sizes(
            [
                "loadTable",
                "trivial (same bytes)",
                "trivial (tiny)",
                "config",
                "health",
            ],
            [
                body.len(),
                body.len(),
                TINY_BODY.len(),
                config.len(),
                health.len(),
            ],
            c,
        ),
    );
    let bytes = t.metadata_bytes();
    let r_same = floe.rate() / same_r.rate();
    let r_tiny = floe.rate() / tiny.rate();
    let cmd = format!(
        "wrk -t2 -c{c} -d{secs}s, {ROUNDS_MANY} rounds alternating floe / trivial (same bytes) / trivial (tiny) / config / health; medians"
    );
    let other = format!(
        "other processes used {:.2} cores during floe's rounds",
        floe.other_cores()
    );
    vec![
        Row::new(
            format!(
                "1a. loadTable, {c} connections, a table of {bytes} B of metadata ({} snapshots, {} B answered)",
                t.snapshots,
                body.len()
            ),
            rate_cell(&floe, "loads"),
        )
        .baseline(
            format!(
                "trivial axum answering the same {} B: {}",
                body.len(),
                rate_cell(&same_r, "req")
            ),
            r_same,
        )
        .budget(">= 0.70x", r_same >= 0.7)
        .cpu(floe.cpu())
        .cpu(same_r.cpu())
        .note(format!("{cmd}; p50 {} vs {}; {other}", us(floe.p50()), us(same_r.p50()))),
        Row::new(
            format!("1b. the same loadTable vs a tiny body ({TINY_BODY}), {c} connections"),
            rate_cell(&floe, "loads"),
        )
        .baseline(format!("trivial axum, tiny body: {}", rate_cell(&tiny, "req")), r_tiny)
        .budget(">= 0.70x", r_tiny >= 0.7)
        .cpu(floe.cpu())
        .cpu(tiny.cpu()),
        Row::new(
            format!(
                "1e. `GET {CONFIG_PATH}` ({} B answered), {c} connections",
                config.len()
            ),
            rate_cell(&config_r, "req"),
        )
        .baseline(
            format!("trivial axum, tiny body: {:.0} req/s", tiny.rate()),
            config_r.rate() / tiny.rate(),
        )
        .cpu(config_r.cpu()),
        Row::new(
            format!("1f. `GET /health` ({} B answered), {c} connections", health.len()),
            rate_cell(&health_r, "req"),
        )
        .baseline(
            format!("trivial axum, tiny body: {:.0} req/s", tiny.rate()),
            health_r.rate() / tiny.rate(),
        )
        .cpu(health_r.cpu()),
    ]
}

/// 1c, 1d: loadTable p50 at 1 connection against the trivial handler answering the same
/// bytes and a tiny body.
pub fn one_connection(b: &Bench, t: &Table) -> Vec<Row> {
    let body = t.load(&b.c);
    let same = b.trivial.add(body.clone());
    let path = t.path();
    let secs = b.s.secs(2);
    let m0 = b.c.route_time(crate::TABLE_ROUTE, "GET");
    let [floe, same_r, tiny] = wrk::rounds(
        ROUNDS_ONE,
        [
            b.floe(&path, 1, secs),
            b.trivial(&same, 1, secs),
            b.trivial("/tiny", 1, secs),
        ],
        sizes(
            ["loadTable", "trivial (same bytes)", "trivial (tiny)"],
            [body.len(), body.len(), TINY_BODY.len()],
            1,
        ),
    );
    let server = b.c.route_time(crate::TABLE_ROUTE, "GET").mean_since(&m0);
    let (r_same, r_tiny) = (
        ratio(floe.p50(), same_r.p50()),
        ratio(floe.p50(), tiny.p50()),
    );
    let cmd = format!(
        "wrk -t1 -c1 -d{secs}s, {ROUNDS_ONE} rounds alternating; median of the rounds' p50"
    );
    vec![
        Row::new(
            "1c. loadTable p50, 1 connection, vs the trivial handler answering the same bytes",
            format!("{} (p99 {})", us(floe.p50()), us(floe.p99())),
        )
        .baseline(
            format!("{} (p99 {})", us(same_r.p50()), us(same_r.p99())),
            r_same,
        )
        .budget("<= 2.5x", r_same <= 2.5)
        .cpu(floe.cpu())
        .cpu(same_r.cpu())
        .note(format!("{cmd}; floe's server-side mean {}", us(server))),
        Row::new(
            "1d. the same vs the trivial handler with a tiny body",
            us(floe.p50()),
        )
        .baseline(us(tiny.p50()), r_tiny)
        .budget("<= 2.5x", r_tiny <= 2.5)
        .cpu(tiny.cpu()),
    ]
}

/// The small table's loads at 1 connection with the same bytes from the trivial server:
/// measured at the start and again at the end (figure 2b).
pub struct Moment {
    pub floe: Series,
    pub same: Series,
    pub server_mean: Duration,
    pub tables: u64,
    pub writes: u64,
}

pub fn small_moment(b: &Bench, t: &Table, body: &str, same: &str) -> Moment {
    let path = t.path();
    let secs = b.s.secs(1);
    let m0 = b.c.route_time(crate::TABLE_ROUTE, "GET");
    let [floe, same_r] = wrk::rounds(
        ROUNDS_ONE,
        [b.floe(&path, 1, secs), b.trivial(same, 1, secs)],
        sizes(
            ["loadTable", "trivial (same bytes)"],
            [body.len(), body.len()],
            1,
        ),
    );
    let (writes, _) = crate::writes_and_conflicts(&b.c);
    Moment {
        floe,
        same: same_r,
        server_mean: b.c.route_time(crate::TABLE_ROUTE, "GET").mean_since(&m0),
        tables: crate::table::count_tables(&b.c),
        writes,
    }
}

/// 2b: the small table's load at the end of the run against at its start.
pub fn before_after(before: &Moment, after: &Moment) -> Row {
    let r = ratio(after.floe.p50(), before.floe.p50());
    let norm = |m: &Moment| ratio(m.floe.p50(), m.same.p50());
    Row::new(
        format!(
            "2b. loadTable of the 10-snapshot table after {} more tables and {} more commits",
            after.tables - before.tables,
            after.writes - before.writes
        ),
        format!("p50 {}", us(after.floe.p50())),
    )
    .baseline(format!("p50 {} at the start", us(before.floe.p50())), r)
    .budget("<= 1.2x (ours: the issue says 'does not depend')", r <= 1.2)
    .cpu(after.floe.cpu())
    .note(format!(
        "each over the trivial handler answering the same bytes at that moment: {:.2}x after vs {:.2}x before; server-side mean {} vs {}",
        norm(after),
        norm(before),
        us(after.server_mean),
        us(before.server_mean)
    ))
}

/// 2a: loadTable p50 against metadata size, each size against the trivial handler
/// answering the same bytes, at 1 connection.
pub fn by_size(b: &Bench, tables: [&Table; 3]) -> Row {
    let bodies = tables.map(|t| t.load(&b.c));
    let paths = tables.map(Table::path);
    let statics = bodies.each_ref().map(|body| b.trivial.add(body.clone()));
    let secs = b.s.secs(1);
    let [l0, l1, l2, s1, s2] = wrk::rounds(
        ROUNDS_ONE,
        [
            b.floe(&paths[0], 1, secs),
            b.floe(&paths[1], 1, secs),
            b.floe(&paths[2], 1, secs),
            b.trivial(&statics[1], 1, secs),
            b.trivial(&statics[2], 1, secs),
        ],
        sizes(
            [
                "small",
                "s1000",
                "s10000",
                "trivial s1000",
                "trivial s10000",
            ],
            [
                bodies[0].len(),
                bodies[1].len(),
                bodies[2].len(),
                bodies[1].len(),
                bodies[2].len(),
            ],
            1,
        ),
    );
    let bytes = tables.map(Table::metadata_bytes);
    let per_kib = |s: &Series, b: u64| s.p50().as_secs_f64() * 1e6 / (b as f64 / 1024.0);
    let (k1, k2) = (per_kib(&l1, bytes[1]), per_kib(&l2, bytes[2]));
    let cpu_per = |s: &Series| us(s.cpu().server / s.requests().max(1) as u32);
    Row::new(
        format!(
            "2a. loadTable p50 vs metadata size: {} / {} / {} snapshots, 1 connection",
            tables[0].snapshots, tables[1].snapshots, tables[2].snapshots
        ),
        format!(
            "{} B: {}; {} B: {}; {} B: {} ({k2:.2} vs {k1:.2} µs/KiB)",
            bytes[0],
            us(l0.p50()),
            bytes[1],
            us(l1.p50()),
            bytes[2],
            us(l2.p50())
        ),
    )
    .baseline(
        format!(
            "trivial, the same bytes: {} and {} ({:.2}x and {:.2}x)",
            us(s1.p50()),
            us(s2.p50()),
            ratio(l1.p50(), s1.p50()),
            ratio(l2.p50(), s2.p50())
        ),
        k2 / k1,
    )
    .budget(
        "time per KiB at 10,000 <= 1.25x that at 1,000 (proportional to size)",
        k2 <= 1.25 * k1,
    )
    .cpu(l1.cpu())
    .cpu(l2.cpu())
    .cpu(s2.cpu())
    .note(format!(
        "wrk -t1 -c1 -d{secs}s, {ROUNDS_ONE} rounds alternating; floe serve's CPU per load {} / {} / {}",
        cpu_per(&l0),
        cpu_per(&l1),
        cpu_per(&l2)
    ))
}

/// 2c and 2d: the same table in this catalog against in a fresh one (a second floe serve),
/// at the same moment, 1 connection, alternating rounds.
pub fn against_fresh(
    b: &Bench,
    t: &Table,
    twin: &crate::support::server::Server,
    twin_t: &Table,
    name: &str,
    budget: bool,
) -> Row {
    let twin_c = crate::support::Client::new(&twin.base);
    let (body, twin_body) = (t.load(&b.c), twin_t.load(&twin_c));
    let (path, twin_path) = (t.path(), twin_t.path());
    let secs = b.s.secs(1);
    let (m, tm) = (
        b.c.route_time(crate::TABLE_ROUTE, "GET"),
        twin_c.route_time(crate::TABLE_ROUTE, "GET"),
    );
    let [big, fresh] = wrk::rounds(
        ROUNDS_ONE,
        [
            b.floe(&path, 1, secs),
            Load::get(&twin.base, &twin_path, 1, secs).server(twin.pid()),
        ],
        sizes(
            ["this catalog", "fresh catalog"],
            [body.len(), twin_body.len()],
            1,
        ),
    );
    let (s_big, s_fresh) = (
        b.c.route_time(crate::TABLE_ROUTE, "GET").mean_since(&m),
        twin_c.route_time(crate::TABLE_ROUTE, "GET").mean_since(&tm),
    );
    let r = ratio(big.p50(), fresh.p50());
    let row = Row::new(name, format!("p50 {}", us(big.p50())))
        .baseline(format!("fresh catalog: p50 {}", us(fresh.p50())), r)
        .cpu(big.cpu())
        .cpu(fresh.cpu())
        .note(format!(
            "{} vs {} B of metadata; server-side mean {} vs {}; wrk -t1 -c1 -d{secs}s, {ROUNDS_ONE} rounds alternating",
            t.metadata_bytes(),
            twin_t.metadata_bytes(),
            us(s_big),
            us(s_fresh)
        ));
    if budget {
        row.budget("<= 1.2x", r <= 1.2)
    } else {
        row
    }
}
