//! `floe serve`: opens (or creates) the store under the data folder, makes sure `main`
//! exists, serves HTTP until SIGINT or SIGTERM, then flushes and exits 0. If the store is
//! poisoned (a flush or fdatasync failed), it says so and exits 1: nothing is retried.
//!
//! Layout of the data folder: `catalog/` holds the sled store. The warehouse folder and
//! run logs join it with later issues.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use floe_catalog::Catalog;
use floe_commits::{SledBackend, Store, SystemClock};

use crate::ServeArgs;

pub fn run(args: ServeArgs) -> ExitCode {
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("floe serve: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    let catalog_dir = args.data_dir.join("catalog");
    std::fs::create_dir_all(&catalog_dir).map_err(|e| {
        format!(
            "cannot create the data folder {}: {e}",
            args.data_dir.display()
        )
    })?;
    let backend = Arc::new(SledBackend::open(&catalog_dir).map_err(|e| e.message)?);
    let store = Arc::new(
        Store::open(backend.clone(), Arc::new(SystemClock))
            .map_err(|e| format!("cannot initialize the store: {e}"))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        println!(
            "floe {} listening on http://{local}, data in {}",
            env!("CARGO_PKG_VERSION"),
            absolute(&args.data_dir).display()
        );
        let app = floe_rest::router(Catalog::new(store.clone()));
        let (stop, stopped) = tokio::sync::watch::channel(None::<Stop>);
        let watcher = tokio::spawn(watch(backend.clone(), stop));
        let mut until = stopped.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = until.wait_for(Option::is_some).await;
            })
            .await
            .map_err(|e| format!("the server failed: {e}"))?;
        watcher.abort();
        let why = *stopped.borrow();
        match why {
            Some(Stop::Poisoned) => Err(
                "the store is poisoned (a flush or fdatasync failed); exiting without retrying. \
                 Restart floe to recover everything that was acknowledged"
                    .to_owned(),
            ),
            _ => Ok(()),
        }
    })?;
    drop(store);
    backend
        .flush()
        .map_err(|e| format!("the final flush failed: {}", e.message))?;
    println!("floe stopped; everything acknowledged is on disk");
    Ok(())
}

/// Why the server stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Signal,
    Poisoned,
}

/// Ends the server on SIGINT or SIGTERM, or as soon as the store is poisoned.
async fn watch(backend: Arc<SledBackend>, stop: tokio::sync::watch::Sender<Option<Stop>>) {
    let poisoned = async {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
        while !backend.is_poisoned() {
            every.tick().await;
        }
    };
    let why = tokio::select! {
        () = shutdown_signal() => Stop::Signal,
        () = poisoned => Stop::Poisoned,
    };
    let _ = stop.send(Some(why));
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
