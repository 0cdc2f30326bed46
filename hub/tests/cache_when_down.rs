//! A model or eval set pinned at a commit that is already in the Hugging Face cache is used
//! when the Hub cannot be reached, as `huggingface_hub` does: the cache is filled through the
//! local Hub server on 127.0.0.1, the server is stopped (connections are refused), and the same
//! client, not in offline mode, resolves both again. An unpinned model still needs the Hub and
//! says so.

use std::time::Duration;

use hub::server::HubServer;
use hub::{ClientConfig, HubClient, HubError, RepoKind, RetryPolicy};

fn client(url: &str, cache: &std::path::Path) -> HubClient {
    let cfg = ClientConfig::new(url, None, cache, false).with_retry(RetryPolicy {
        retries: 1,
        base_delay: Duration::from_millis(10),
    });
    HubClient::new(cfg).expect("client")
}

#[tokio::test]
async fn pinned_model_and_eval_set_come_from_the_cache_when_the_hub_is_down() {
    let server = HubServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    server
        .create_repo(RepoKind::Model, "acme/sharded", false)
        .unwrap();
    let index = br#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    let model_sha = server
        .commit(
            RepoKind::Model,
            "acme/sharded",
            &[
                ("config.json", b"{\"hidden_size\":8}"),
                ("tokenizer.json", b"{}"),
                ("model.safetensors.index.json", index),
                ("model-00001-of-00002.safetensors", b"one"),
                ("model-00002-of-00002.safetensors", b"two"),
            ],
        )
        .unwrap();
    server
        .create_repo(RepoKind::Model, "acme/single", false)
        .unwrap();
    let single_sha = server
        .commit(
            RepoKind::Model,
            "acme/single",
            &[
                ("config.json", b"{}"),
                ("tokenizer.json", b"{}"),
                ("model.safetensors", b"weights"),
            ],
        )
        .unwrap();
    server
        .create_repo(RepoKind::Dataset, "acme/eval", false)
        .unwrap();
    let rows = b"{\"instruction\":\"a\",\"context\":\"\",\"response\":\"b\"}\n";
    let eval_sha = server
        .commit(RepoKind::Dataset, "acme/eval", &[("data.jsonl", rows)])
        .unwrap();
    let url = server.url().to_string();

    let c = client(&url, dir.path());
    let sharded = c
        .download_model(&format!("acme/sharded@{model_sha}"))
        .await
        .unwrap();
    let single = c
        .download_model(&format!("acme/single@{single_sha}"))
        .await
        .unwrap();
    let eval = c
        .download_eval_set(&format!("acme/eval@{eval_sha}"), 1 << 20)
        .await
        .unwrap();
    // An unpinned download too, so that refs/main is cached: it must not stand in for a pin.
    c.download_model("acme/single").await.unwrap();

    server.stop().await;
    let c = client(&url, dir.path());
    let again = c
        .download_model(&format!("acme/sharded@{model_sha}"))
        .await
        .expect("the pinned sharded model from the cache with the Hub down");
    assert_eq!(again, sharded);
    assert_eq!(std::fs::read(&again.weights[1]).unwrap(), b"two");
    let again = c
        .download_model(&format!("acme/single@{}", single_sha.to_uppercase()))
        .await
        .expect("the pinned model from the cache, sha in any case");
    assert_eq!(again, single);
    let files = c
        .download_model_files("acme/single", Some(&single_sha), &["config.json"])
        .await
        .expect("pinned files from the cache");
    assert_eq!(files.0, single_sha);
    let again = c
        .download_eval_set(&format!("acme/eval@{eval_sha}"), 1 << 20)
        .await
        .expect("the pinned eval set from the cache with the Hub down");
    assert_eq!(again, eval);

    // Unpinned, the Hub is asked (the branch may have moved): its failure is reported.
    let err = c.download_model("acme/single").await.unwrap_err();
    assert!(matches!(err, HubError::Io(_)), "{err}");
    // Pinned but not cached: also the Hub's failure, naming no cache hit.
    let err = c
        .download_model(&format!("acme/single@{}", "0".repeat(40)))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Io(_)), "{err}");
}
