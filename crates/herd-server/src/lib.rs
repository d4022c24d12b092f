//! An OpenAI-compatible HTTP server over herd's engine, with continuous batching, Prometheus
//! metrics and a web chat page.
//!
//! Not the scheduling maths of the model (that is `herd-model`'s engine) nor sampling (that is
//! `herd-generate`): this crate owns HTTP, the request/response shapes, and the scheduler that
//! feeds the engine.

pub mod request;
pub mod scheduler;
pub mod server;
pub mod tools;

pub use server::{AppState, ServerOptions, router};

use std::sync::Arc;

/// Serves until SIGINT or SIGTERM: then stops accepting, lets running requests finish for up
/// to `shutdown_timeout`, cancels what is left, and stops the engine.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = router(state.clone());
    let signal = async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        let _ = tx.send(true);
    };
    let grace = state.opts.shutdown_timeout;
    let st = state.clone();
    let mut rx2 = rx.clone();
    // After the grace period, cancel what still runs so that its streams end.
    tokio::spawn(async move {
        if rx2.wait_for(|&v| v).await.is_ok() {
            tokio::time::sleep(grace).await;
            st.cancel_all();
        }
    });
    let mut rx3 = rx;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            signal.await;
            let _ = rx3.wait_for(|&v| v).await;
        })
        .await
}
