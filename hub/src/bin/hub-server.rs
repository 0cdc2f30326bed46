//! `hub-server`: the local Hub server ([`hub::server::HubServer`]) as a process, for
//! `scripts/hub_check.py` and manual devnet use.
//!
//! ```text
//! hub-server [--addr 127.0.0.1:0] [--user NAME:TOKEN]... [--dataset NS/NAME=FILE[:private]]...
//! ```
//! Prints `HUB_URL=<url>` on its first line once it listens, then serves until stdin closes
//! or Ctrl-C.

use std::net::SocketAddr;

use hub::server::HubServer;
use hub::RepoKind;

fn usage() -> ! {
    eprintln!(
        "usage: hub-server [--addr 127.0.0.1:0] [--user NAME:TOKEN]... \
         [--dataset NS/NAME=FILE[:private]]..."
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut users = Vec::new();
    let mut datasets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let Some(v) = args.next() else { usage() };
        match a.as_str() {
            "--addr" => addr = v.parse().unwrap_or_else(|_| usage()),
            "--user" => users.push(
                v.split_once(':')
                    .map(|(n, t)| (n.to_string(), t.to_string()))
                    .unwrap_or_else(|| usage()),
            ),
            "--dataset" => datasets.push(v),
            _ => usage(),
        }
    }
    let server = match HubServer::start_on(addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hub-server: cannot listen on {addr}: {e}");
            std::process::exit(1)
        }
    };
    for (name, token) in &users {
        server.add_user(name, token);
    }
    for spec in &datasets {
        let Some((repo, file)) = spec.split_once('=') else {
            usage()
        };
        let (file, private) = match file.strip_suffix(":private") {
            Some(f) => (f, true),
            None => (file, false),
        };
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("hub-server: reading {file}: {e}");
                std::process::exit(1)
            }
        };
        let seeded = server
            .create_repo(RepoKind::Dataset, repo, private)
            .and_then(|_| server.commit(RepoKind::Dataset, repo, &[(hub::DATASET_FILE, &bytes)]));
        match seeded {
            Ok(sha) => eprintln!("hub-server: seeded dataset {repo} at {sha}"),
            Err(e) => {
                eprintln!("hub-server: seeding {repo}: {e}");
                std::process::exit(1)
            }
        }
    }
    println!("HUB_URL={}", server.url());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = stdin_closed => {}
    }
    server.stop().await;
}
