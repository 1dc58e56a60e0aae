//! Warehouses on S3 (issue 20), against `floe serve` on moto's S3 and STS on loopback (the
//! test venv's `moto_server`; `FLOE_TEST_VENV` names the venv, as for the slow tests):
//!
//! - **loadTable with vended credentials** (`--vend-credentials sts`, the STS answer
//!   cached) against the same load without asking for credentials, on the same server in
//!   the same run: wrk, 16 connections, rounds alternating;
//! - **an import of a 1 GiB Parquet file** into the bucket (a server-side source under
//!   `--import-root`: hashed, its footer read, copied in 8 MiB parts, 8 in flight, the
//!   snapshot committed) against boto3's multipart `upload_file` of the same file to the
//!   same server with the same part size and concurrency, rounds alternating.
//!
//! `cargo bench -p floe --bench s3`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::server::Server;
use support::wrk::{self, Load};
use support::{Row, Scale, machine_notes, us};

const PATH: &str = "/iceberg/v1/main/namespaces/db/tables/t";
const DELEGATION: &str = "X-Iceberg-Access-Delegation: vended-credentials";

/// moto's server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start(venv: &str) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(format!("{venv}/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&endpoint).call().is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { child, endpoint }
    }

    fn bucket(&self, name: &str) {
        ureq::put(&format!("{}/{name}", self.endpoint))
            .send_empty()
            .unwrap();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Parquet file of `bytes` (about): 16 columns of pseudo-random longs, plain encoding,
/// no compression, so that its size is what travels.
fn big_parquet(path: &Path, bytes: u64) {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;

    let columns = 16;
    let schema = Arc::new(Schema::new(
        (0..columns)
            .map(|c| Field::new(format!("c{c}"), DataType::Int64, false))
            .collect::<Vec<_>>(),
    ));
    let props = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    let batch_rows = 1 << 16;
    let batches = bytes / (batch_rows as u64 * columns as u64 * 8);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..batches {
        let arrays: Vec<ArrayRef> = (0..columns)
            .map(|_| {
                let values: Vec<i64> = (0..batch_rows)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as i64
                    })
                    .collect();
                Arc::new(Int64Array::from(values)) as ArrayRef
            })
            .collect();
        writer
            .write(&RecordBatch::try_new(schema.clone(), arrays).unwrap())
            .unwrap();
    }
    writer.close().unwrap();
}

/// boto3's multipart upload of `file` (8 MiB parts, 8 in flight, retries as
/// `object_store`'s): its time, measured in the Python process around `upload_file` alone;
/// the object is deleted afterwards (moto keeps every object in memory).
fn boto3_upload(venv: &str, endpoint: &str, file: &Path, bucket: &str, key: &str) -> Duration {
    let script = format!(
        "import sys, time, boto3\n\
from boto3.s3.transfer import TransferConfig\n\
from botocore.config import Config\n\
s3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1', config=Config(retries={{'max_attempts': 10, 'mode': 'standard'}}))\n\
config = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=8)\n\
started = time.perf_counter()\n\
s3.upload_file(sys.argv[1], '{bucket}', '{key}', Config=config)\n\
print(time.perf_counter() - started)\n\
s3.delete_object(Bucket='{bucket}', Key='{key}')\n"
    );
    let out = Command::new(format!("{venv}/bin/python"))
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Duration::from_secs_f64(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

/// `floe serve` on a warehouse in moto's `bench-wh` bucket, with `more` flags (its stderr
/// beside its data folder).
fn on_moto(moto: &Moto, data: &Path, more: &[&str]) -> Server {
    let mut args = vec![
        "--warehouse",
        "s3://bench-wh/wh",
        "--s3-endpoint",
        &moto.endpoint,
        "--s3-path-style",
        "--s3-access-key-id",
        "testing",
        "--s3-secret-access-key",
        "testing",
    ];
    args.extend_from_slice(more);
    Server::start(data, &data.with_extension("stderr"), &args)
}

fn main() {
    let Ok(venv) = std::env::var("FLOE_TEST_VENV") else {
        println!("SKIPPED: the S3 bench needs FLOE_TEST_VENV (moto_server and boto3)");
        return;
    };
    let div = support::scale_divisor();
    let s = Scale(div);
    let seconds = s.secs(6);
    let rounds = if div == 1 { 5 } else { 1 };
    wrk::ensure();
    let root = support::bench_root();
    println!(
        "==== floe warehouses on S3 (issue 20){} ====",
        if div == 1 {
            ""
        } else {
            " (NOT for the record)"
        }
    );
    machine_notes(root.path());
    let moto = Moto::start(&venv);
    moto.bucket("bench-wh");
    moto.bucket("bench-boto3");
    let sources = root.path().join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    let server = on_moto(
        &moto,
        &root.path().join("data"),
        &[
            "--vend-credentials",
            "sts",
            "--sts-role-arn",
            "arn:aws:iam::123456789012:role/bench",
            "--import-root",
            sources.to_str().unwrap(),
        ],
    );
    let config = root.path().join("cli");
    let csv = sources.join("t.csv");
    let mut text = String::from("id,name\n");
    for i in 0..1000 {
        text.push_str(&format!("{i},n{i}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    support::floe_cli(&server.base, &config, &["namespace", "create", "db"]);
    support::floe_cli(
        &server.base,
        &config,
        &["import", csv.to_str().unwrap(), "--table", "db.t"],
    );

    // loadTable with and without vended credentials, rounds alternating.
    let plain_load = Load::get(&server.base, PATH, 16, seconds).server(server.pid());
    let vended_load = Load::get(&server.base, PATH, 16, seconds)
        .server(server.pid())
        .header(DELEGATION);
    let (mut plain, mut vended) = (wrk::Series(Vec::new()), wrk::Series(Vec::new()));
    for round in 0..rounds {
        if round % 2 == 0 {
            plain.0.push(wrk::run(plain_load));
            vended.0.push(wrk::run(vended_load));
        } else {
            vended.0.push(wrk::run(vended_load));
            plain.0.push(wrk::run(plain_load));
        }
    }
    let mut paired: Vec<f64> = vended
        .0
        .iter()
        .zip(&plain.0)
        .map(|(v, p)| v.rate() / p.rate())
        .collect();
    paired.sort_by(f64::total_cmp);
    let ratio = paired[paired.len() / 2];
    let bytes = |s: &wrk::Series| {
        s.0.iter()
            .map(wrk::Run::bytes_per_answer)
            .max()
            .unwrap_or(0)
    };
    println!(
        "loadTable: without credentials {:.0} req/s ({} B), with vended credentials {:.0} req/s ({} B); per-round ratios {paired:.3?}",
        plain.rate(),
        bytes(&plain),
        vended.rate(),
        bytes(&vended)
    );
    let mut figures = vec![
        Row::new(
            "loadTable with STS-vended credentials, cached (wrk, 16 connections)",
            format!(
                "{:.0} req/s, p50 {} (median of {} rounds' ratios: {paired:.3?})",
                vended.rate(),
                us(vended.p50()),
                paired.len()
            ),
        )
        .baseline(
            format!(
                "the same load without asking for credentials, same server and run: {:.0} req/s, p50 {}",
                plain.rate(),
                us(plain.p50())
            ),
            ratio,
        )
        .budget(">= 0.80x", ratio >= 0.8)
        .cpu(vended.cpu()),
    ];

    // A 1 GiB import into the bucket against boto3's multipart upload of the same file.
    let size = (1u64 << 30) / div;
    let big = sources.join("big.parquet");
    big_parquet(&big, size);
    let size = std::fs::metadata(&big).unwrap().len();
    let source = format!("file://{}", big.display());
    let (mut floe, mut boto) = (Vec::new(), Vec::new());
    let import_rounds = if div == 1 { 3 } else { 1 };
    let _ = server.stop();
    drop(moto);
    for round in 0..import_rounds {
        // A fresh moto and server each round: moto keeps every object in memory.
        let moto = Moto::start(&venv);
        moto.bucket("bench-wh");
        moto.bucket("bench-boto3");
        let dir = root.path().join(format!("import-{round}"));
        let server = on_moto(&moto, &dir, &["--import-root", sources.to_str().unwrap()]);
        support::floe_cli(&server.base, &config, &["namespace", "create", "db"]);
        let mut run_floe = || {
            let started = Instant::now();
            support::floe_cli(
                &server.base,
                &config,
                &["import", &source, "--table", "db.big"],
            );
            floe.push(started.elapsed());
        };
        let mut run_boto = || {
            boto.push(boto3_upload(
                &venv,
                &moto.endpoint,
                &big,
                "bench-boto3",
                "big.parquet",
            ));
        };
        if round % 2 == 0 {
            run_floe();
            run_boto();
        } else {
            run_boto();
            run_floe();
        }
        let _ = server.stop();
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (floe_t, boto_t) = (median(&mut floe), median(&mut boto));
    let mib = size as f64 / (1 << 20) as f64;
    let import_ratio = boto_t.as_secs_f64() / floe_t.as_secs_f64();
    println!(
        "import of {mib:.0} MiB: floe {floe:?}, boto3 {boto:?}; throughput ratio {import_ratio:.2}x"
    );
    figures.push(
        Row::new(
            format!("floe import of a {mib:.0} MiB Parquet file into the bucket (server-side source; hash, footer, 8 MiB parts x 8, commit)"),
            format!(
                "{:.2} s, {:.0} MiB/s (median of {import_rounds})",
                floe_t.as_secs_f64(),
                mib / floe_t.as_secs_f64()
            ),
        )
        .baseline(
            format!(
                "boto3 upload_file of the same file, 8 MiB parts, 8 threads, same server: {:.2} s, {:.0} MiB/s",
                boto_t.as_secs_f64(),
                mib / boto_t.as_secs_f64()
            ),
            import_ratio,
        )
        .budget(">= 0.50x boto3's throughput", import_ratio >= 0.5),
    );
    support::report::print("warehouses on S3 (issue 20)", &figures, div);
}
