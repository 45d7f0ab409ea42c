//! The HTTP floor: a bare hyper server that reads the whole body and answers 204. Benchmarks
//! report the collector's throughput as a ratio of this server's, measured in the same run.

use std::convert::Infallible;

use anyhow::Result;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "BASELINE_LISTEN", default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Worker threads (match the server under test).
    #[arg(long, env = "BASELINE_THREADS", default_value_t = 2)]
    threads: usize,
}

async fn answer(request: Request<hyper::body::Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        println!("baseline listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(answer)).await;
            });
        }
    })
}
