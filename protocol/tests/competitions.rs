//! The `[[competitions]]` table through the real config parser: overrides merge into
//! `[training]`, bad entries are refused naming the key and line, unknown ids are named, and the
//! loss cache's config hash depends on the competition and its settings.

use protocol::config::ClusterConfig;

const BASE: &str = "[training]\nepochs = 2\nmax_rows = 100\n[dataset]\nmax_rows = 100\n";

fn parse(extra: &str) -> Result<ClusterConfig, String> {
    ClusterConfig::from_toml_str(&format!("{BASE}{extra}"), "cluster.toml")
        .map_err(|e| e.to_string())
}

#[test]
fn overrides_merge_and_ids_are_checked() {
    let config = parse(
        "[[competitions]]\nid = \"1\"\n[[competitions]]\nid = \"roleplay\"\nmax_rows = 40\n\
         training = { epochs = 3, lora_rank = 8 }\n",
    )
    .unwrap();
    assert_eq!(config.training_for("1"), config.training);
    let t = config.training_for("roleplay");
    assert_eq!((t.epochs, t.lora_rank, t.max_rows), (3, 8, 40));
    assert_eq!(t.lr, config.training.lr);
    assert_eq!(
        config.competition("7").unwrap_err(),
        "unknown competition 7"
    );
    assert!(config.competition("roleplay").unwrap().is_some());
    // It survives a round trip through TOML.
    let again = ClusterConfig::from_toml_str(&config.to_toml().unwrap(), "again").unwrap();
    assert_eq!(again, config);
    // No table: every id is accepted with the top-level settings.
    let open = parse("").unwrap();
    assert_eq!(open.competition("anything"), Ok(None));
}

#[test]
fn the_cache_hash_depends_on_the_competition_and_its_settings() {
    let config = parse(
        "[[competitions]]\nid = \"1\"\n[[competitions]]\nid = \"2\"\n\
         [[competitions]]\nid = \"3\"\ntraining = { seed = 43 }\n",
    )
    .unwrap();
    let (h1, h2, h3) = (
        config.training_hash_for("1"),
        config.training_hash_for("2"),
        config.training_hash_for("3"),
    );
    assert_eq!(config.training_for("1"), config.training_for("2"));
    assert_ne!(h1, h2, "same settings, other competition");
    assert_ne!(h2, h3);
    assert_eq!(h1, config.training_hash_for("1"));
}

#[test]
fn bad_entries_are_refused_by_key_and_line() {
    let cases = [
        (
            "[[competitions]]\nid = \"1\"\n[[competitions]]\nid = \"1\"\n",
            "competitions[1].id",
        ),
        ("[[competitions]]\nid = \"a:b\"\n", "competitions[0].id"),
        (
            "[[competitions]]\nid = \"1\"\nmax_rows = 500\n",
            "competitions[0].max_rows",
        ),
        (
            "[[competitions]]\nid = \"1\"\ntraining = { lora_rank = 0 }\n",
            "competitions[0].training.lora_rank",
        ),
        (
            "[[competitions]]\nid = \"1\"\ntraining = { lora_rnk = 4 }\n",
            "lora_rnk",
        ),
        ("[[competitions]]\nid = \"1\"\nrows = 4\n", "rows"),
        (
            "[[competitions]]\nid = \"1\"\nreward_share = 0.0\n",
            "competitions[0].reward_share",
        ),
        (
            "[[competitions]]\nid = \"1\"\nreward_share = -2.0\n",
            "competitions[0].reward_share",
        ),
        (
            "[[competitions]]\nid = \"1\"\nreward_share = nan\n",
            "competitions[0].reward_share",
        ),
    ];
    let many: String = (0..8)
        .map(|i| format!("[[competitions]]\nid = \"{i}\"\neval_set = \"set{i}.jsonl\"\n"))
        .collect();
    let err = parse(&many).unwrap_err();
    assert!(
        err.contains("competitions: 9 distinct eval sets") && err.contains("at most 8"),
        "{err}"
    );
    let reused: String = (0..8)
        .map(|i| {
            format!(
                "[[competitions]]\nid = \"{i}\"\neval_set = \"set{}.jsonl\"\n",
                i % 7
            )
        })
        .collect();
    assert!(parse(&reused).is_ok(), "8 distinct sets are fine");
    for (extra, needle) in cases {
        let err = parse(extra).unwrap_err();
        assert!(err.contains(needle), "{extra}: {err}");
        assert!(err.starts_with("cluster.toml"), "{err}");
    }
    let err = parse("[[competitions]]\nid = \"1\"\nmax_rows = 500\n").unwrap_err();
    assert!(
        err.starts_with("cluster.toml:8: "),
        "line of the key: {err}"
    );
}

#[test]
fn each_competition_names_its_eval_set_and_share() {
    let config = parse(
        "[eval]\nset = \"main.jsonl\"\n[[competitions]]\nid = \"1\"\n\
         [[competitions]]\nid = \"2\"\neval_set = \"org/two@0123456789abcdef0123456789abcdef01234567\"\n\
         reward_share = 3.0\n[[competitions]]\nid = \"3\"\neval_set = \"main.jsonl\"\n",
    )
    .unwrap();
    assert_eq!(config.eval_set_for("1"), "main.jsonl");
    assert_eq!(
        config.eval_set_for("2"),
        "org/two@0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(config.eval_set_for("unlisted"), "main.jsonl");
    assert_eq!(
        config.eval_sets(),
        [
            "main.jsonl",
            "org/two@0123456789abcdef0123456789abcdef01234567"
        ]
    );
    let shares: Vec<f64> = config.competitions.iter().map(|c| c.share()).collect();
    assert_eq!(shares, [1.0, 3.0, 1.0]);
}
