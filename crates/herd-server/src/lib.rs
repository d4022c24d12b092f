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

use axum::serve::ListenerExt;

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
    axum::serve(without_nagle(listener), app)
        .with_graceful_shutdown(async move {
            signal.await;
            let _ = rx3.wait_for(|&v| v).await;
        })
        .await
}

/// `listener`, with TCP_NODELAY set on every connection it accepts. Streamed tokens are small
/// writes, each after the last: with Nagle's algorithm a write waits for the client's
/// acknowledgement of the one before, which the client delays by up to 40 ms. That made the
/// first token of every streamed request arrive 40 ms late (`bench/serve_load.py`: time to
/// first token 40 → 5 ms on one client). A socket that refuses the option is served anyway:
/// only a broken one does, and its request fails on its own.
fn without_nagle(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_waiting_for_acknowledgements() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = without_nagle(listener);
        let (accepted, client) = tokio::join!(
            axum::serve::Listener::accept(&mut listener),
            tokio::net::TcpStream::connect(addr)
        );
        assert!(accepted.0.nodelay().unwrap());
        // A socket's default, so the check above is the wrapper's doing.
        assert!(!client.unwrap().nodelay().unwrap());
    }
}
