//! `hearth proxy`: the transparent metering proxy (hearth-monitor) in front of a server without live
//! counters, such as Ollama; point clients at `--listen` and `hearth dash` at it too.

use crate::bench_run::DbArg;
use anyhow::{Context, Result};
use clap::Args;
use hearth_monitor::proxy::{self, ProxyState};
use std::sync::{Arc, Mutex};

#[derive(Args)]
pub struct ProxyArgs {
    /// Where clients connect.
    #[arg(long, default_value = "127.0.0.1:11435")]
    pub listen: String,
    /// The server requests are forwarded to.
    #[arg(long, default_value = "http://127.0.0.1:11434")]
    pub upstream: String,
    /// Record nothing in the history.
    #[arg(long)]
    pub no_history: bool,
    #[command(flatten)]
    pub db: DbArg,
}

pub fn run(args: ProxyArgs) -> Result<()> {
    let history = if args.no_history { None } else { Some(Arc::new(Mutex::new(args.db.open()?))) };
    let state = ProxyState::new(&args.upstream, history)?;
    match state.upstream_pid() {
        Some(pid) => eprintln!("hearth proxy: upstream process {pid}: sessions record its peak memory"),
        None => eprintln!("hearth proxy: no local process listens on {} (yet): sessions record peak memory as unknown until one does", args.upstream),
    }
    hearth_monitor::block_on(async move {
        let listener = hearth_monitor::bind(&args.listen).await?;
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(args.listen.clone());
        eprintln!("hearth proxy: http://{local} → {} (metrics at http://{local}{})", args.upstream, hearth_monitor::source::PROXY_METRICS_PATH);
        proxy::serve(listener, state, hearth_monitor::ctrl_c()).await.context("serving the proxy")
    })?
}
