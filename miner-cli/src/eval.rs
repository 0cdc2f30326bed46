//! `eval FILE`: trains and evaluates a dataset exactly as a validator's worker does (the same
//! engine, model, and the eval set and training settings of the competition given with
//! `--competition`, from the config), here on this machine, and places the loss among the losses
//! of that competition's miners in the validator's last epoch when its report is readable.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use protocol::scoring::{win_rates, ScoredMiner};
use worker::runner::{DeviceRunner, EvalRows};

use crate::analysis::load_dataset;
use crate::ctx::Ctx;

/// `eval FILE --device D --competition C`.
pub async fn eval(ctx: &Ctx, file: &Path, device: &str, competition: &str) -> Result<()> {
    let config = &ctx.config;
    config.competition(competition).map_err(|e| {
        let listed: Vec<&str> = config.competitions.iter().map(|c| c.id.as_str()).collect();
        anyhow!(
            "--competition: {e}; {} lists {}",
            ctx.config_path.display(),
            listed.join(", ")
        )
    })?;
    let training = config.training_for(competition);
    let (dataset, _) = load_dataset(file, &config.dataset)?;
    let hf = if config.uses_huggingface() {
        Some(ctx.hf_client()?)
    } else {
        None
    };
    let download = crate::ui::bytes("model");
    let sink = crate::ui::hub_sink(download.clone());
    let model_dir = hub::resolve::model(config, &ctx.paths, hf.as_ref(), Some(sink)).await?;
    download.finish_and_clear();
    if config.uses_tiny_model() && !model_dir.join("config.json").exists() {
        worker::write_tiny_model(&model_dir, config.model.tiny_seed)?;
    }
    let eval_path = ctx
        .eval_set_path_of(config.eval_set_for(competition))
        .await?;
    let (eval_rows, eval_hash, _) = hub::resolve::eval_set(config, &eval_path)?;
    let device: worker::Device = device
        .parse()
        .map_err(|e| anyhow!("--device {device}: {e}"))?;
    eprintln!(
        "loading model {} on {device} (eval set {}, {} rows)",
        model_dir.display(),
        eval_path.display(),
        eval_rows.len()
    );
    let dir = model_dir.clone();
    let runner = tokio::task::spawn_blocking(move || DeviceRunner::start(device, &dir))
        .await
        .map_err(|e| anyhow!("loading the model: {e}"))?
        .map_err(|e| anyhow!("model {}: {e}", model_dir.display()))?;
    let bar = crate::ui::items(0, "training");
    let progress_bar = bar.clone();
    let progress = Box::new(move |p: worker::JobProgress| {
        progress_bar.set_length(p.total_steps as u64);
        progress_bar.set_position(p.step as u64);
        progress_bar.set_message(if p.step >= p.total_steps {
            format!("trained (loss {:.4}); evaluating", p.loss)
        } else {
            format!("training (loss {:.4})", p.loss)
        });
    });
    let report = runner
        .run(
            dataset.rows.clone(),
            training.clone(),
            EvalRows {
                hash: eval_hash,
                rows: Arc::new(eval_rows),
            },
            Arc::new(AtomicBool::new(false)),
            progress,
        )
        .await
        .map_err(|e| anyhow!("{}: training failed: {e}", file.display()))?;
    bar.finish_and_clear();
    println!(
        "eval loss {:.5} ({} training rows, {} tokens, {} steps, {} eval rows, {:.1} s; model {}, training config {})",
        report.eval_loss,
        report.train_rows,
        report.train_tokens,
        report.steps,
        report.eval_rows,
        report.seconds,
        &runner.model_id[..12.min(runner.model_id.len())],
        &training.hash()[..12],
    );
    let Some(last) = ctx.last_report()? else {
        println!("no validator epoch report here to compare with");
        return Ok(());
    };
    let me = ctx.hotkey_ss58();
    let field: Vec<ScoredMiner> = last
        .miners
        .iter()
        .filter(|m| me.as_deref() != Some(m.hotkey.as_str()))
        // Losses compare within one competition (the line names it when the validator has a
        // `[[competitions]]` table).
        .filter(|m| m.competition.as_deref().is_none_or(|c| c == competition))
        .filter_map(|m| {
            m.eval_loss.map(|l| ScoredMiner {
                uid: m.uid,
                commit_block: m.commit_block.unwrap_or(u64::MAX - 1),
                eval_loss: l,
            })
        })
        .collect();
    if field.is_empty() {
        println!(
            "the validator's epoch {} scored no other miner: you would be the only one",
            last.epoch
        );
        return Ok(());
    }
    let better = field
        .iter()
        .filter(|m| m.eval_loss < report.eval_loss)
        .count();
    let mut all = field.clone();
    let me_uid = u16::MAX;
    all.push(ScoredMiner {
        uid: me_uid,
        commit_block: u64::MAX,
        eval_loss: report.eval_loss,
    });
    let rates = win_rates(&all, config.scoring.epsilon);
    let mut losses: Vec<String> = field
        .iter()
        .map(|m| format!("uid {} {:.5}", m.uid, m.eval_loss))
        .collect();
    losses.sort();
    println!(
        "rank {} of {} by loss among the validator's epoch {} ({})",
        better + 1,
        field.len() + 1,
        last.epoch,
        losses.join(", ")
    );
    println!(
        "win rate as a new (latest) commit: {:.3} (earlier commits' losses count {:.0} % lower)",
        rates.get(&me_uid).copied().unwrap_or(0.0),
        config.scoring.epsilon * 100.0
    );
    Ok(())
}
