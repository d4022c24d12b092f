//! The training loop: micro-batches in a seeded order, gradient accumulation, clipping,
//! AdamW with a schedule, held-out loss, metrics as JSON lines, and checkpoints that hold
//! everything needed to continue exactly where a killed run stopped.
//!
//! A run directory holds `train.json` (the configuration), `metrics.jsonl`,
//! `checkpoint-N/` (parameters, optimizer moments, `state.json`) and `latest` (the newest
//! checkpoint's name, for people and scripts). Checkpoints are written to a temporary folder
//! that is renamed into place once synced, so a kill at any moment leaves every named
//! checkpoint whole, and a resume continues from the highest-numbered one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use herd_data::Sequence;
use herd_model::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::loss::{Batch, loss_sum};
use crate::optim::{AdamWConfig, Moments, Schedule, apply, clip_grad_norm, gradients};
use crate::{Error, Method, Result, TrainModel};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub method: Method,
    pub optimizer: AdamWConfig,
    pub schedule: Schedule,
    pub warmup_steps: usize,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub max_grad_norm: Option<f64>,
    pub seed: u64,
    /// Held-out loss every this many steps (0: only at the end).
    pub eval_every: usize,
    /// A checkpoint every this many steps (0: only at the end).
    pub save_every: usize,
    /// Recompute each layer's activations in the backward pass instead of keeping them
    /// (gradient checkpointing: less memory, about a third more compute).
    #[serde(default)]
    pub grad_checkpointing: bool,
}

/// What the loop reports after each step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: u64,
    pub tokens_per_second: f64,
    pub elapsed: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    step: usize,
    rng: [u64; 4],
    tokens: u64,
    elapsed: f64,
}

pub struct Summary {
    pub steps: usize,
    pub first_eval_loss: Option<f64>,
    pub final_eval_loss: Option<f64>,
    pub resumed_from: Option<usize>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Micro-batch `k` of the whole run: the epoch's seeded order, then consecutive groups.
fn micro_batch<'a>(train: &'a [Sequence], cfg: &TrainConfig, k: usize) -> Vec<&'a Sequence> {
    let per_epoch = train.len().div_ceil(cfg.batch_size.max(1)).max(1);
    let (epoch, i) = (k / per_epoch, k % per_epoch);
    let mut order: Vec<usize> = (0..train.len()).collect();
    herd_data::pack::shuffle(
        &mut order,
        cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    order
        .iter()
        .skip(i * cfg.batch_size)
        .take(cfg.batch_size)
        .map(|&j| &train[j])
        .collect()
}

pub fn total_steps(train_len: usize, cfg: &TrainConfig) -> usize {
    let per_epoch = train_len.div_ceil(cfg.batch_size.max(1)).max(1);
    let steps = (per_epoch * cfg.epochs.max(1)).div_ceil(cfg.grad_accum.max(1));
    // max_steps wins; the data order simply continues into further epochs.
    cfg.max_steps.unwrap_or(steps)
}

/// Mean loss per target token over `seqs` (no dropout, no gradients kept).
pub fn eval_loss(tm: &mut TrainModel, seqs: &[Sequence], batch_size: usize) -> Result<Option<f64>> {
    if seqs.is_empty() {
        return Ok(None);
    }
    tm.clear_dropout();
    let (mut sum, mut count) = (0f64, 0usize);
    for chunk in seqs.chunks(batch_size.max(1)) {
        let refs: Vec<&Sequence> = chunk.iter().collect();
        let b = Batch::new(&refs);
        if b.targets() == 0 {
            continue;
        }
        sum += match crate::native::loss_sum(tm, &b)? {
            Some(l) => l,
            None => {
                let logits = tm.model.forward(&b.ids_tensor()?, &b.layout, None)?;
                loss_sum(&logits, &b)?.to_scalar::<f32>()? as f64
            }
        };
        count += b.targets();
    }
    Ok((count > 0).then(|| sum / count as f64))
}

fn write_tensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bufs
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Usage(e.to_string()))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| Error::Usage(e.to_string()))?;
    std::fs::write(path, bytes).map_err(io(path))
}

fn read_tensors(path: &Path) -> Result<HashMap<String, Vec<f32>>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Invalid {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok(st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
        })
        .collect())
}

fn save_checkpoint(
    dir: &Path,
    tm: &TrainModel,
    moments: &[Moments],
    state: &State,
) -> Result<PathBuf> {
    let name = format!("checkpoint-{}", state.step);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    write_tensors(&tmp.join("params.safetensors"), &tm.values()?)?;
    let mut ms = vec![];
    for (p, m) in tm.params.iter().zip(moments) {
        let shape = p.var.dims().to_vec();
        ms.push((
            format!("m.{}", p.name),
            shape.clone(),
            if m.m.is_empty() {
                vec![0.0; p.var.elem_count()]
            } else {
                m.m.clone()
            },
        ));
        ms.push((
            format!("v.{}", p.name),
            shape,
            if m.v.is_empty() {
                vec![0.0; p.var.elem_count()]
            } else {
                m.v.clone()
            },
        ));
    }
    write_tensors(&tmp.join("moments.safetensors"), &ms)?;
    let js = serde_json::to_vec_pretty(state).map_err(|e| Error::Usage(e.to_string()))?;
    std::fs::write(tmp.join("state.json"), js).map_err(io(&tmp))?;
    // Make the files durable before the rename publishes them.
    for f in ["params.safetensors", "moments.safetensors", "state.json"] {
        std::fs::File::open(tmp.join(f))
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
    }
    let fin = dir.join(&name);
    let _ = std::fs::remove_dir_all(&fin);
    std::fs::rename(&tmp, &fin).map_err(io(&fin))?;
    herd_model::io::atomic_write(&dir.join("latest"), name.as_bytes())?;
    // Keep the newest two checkpoints.
    for s in checkpoint_steps(dir).iter().rev().skip(2) {
        let _ = std::fs::remove_dir_all(dir.join(format!("checkpoint-{s}")));
    }
    Ok(fin)
}

/// The step numbers of a run directory's checkpoints, ascending.
fn checkpoint_steps(dir: &Path) -> Vec<usize> {
    let mut steps: Vec<usize> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("checkpoint-"))
                .and_then(|s| s.parse().ok())
        })
        .collect();
    steps.sort();
    steps
}

/// The newest checkpoint of a run directory: parameters, moments, state.
///
/// The newest `checkpoint-N` folder, not the one `latest` names: a folder only gets its
/// name once its files are synced, and a kill between that rename and the write of
/// `latest` must not send the resume back to an older checkpoint (or to step 0).
fn load_checkpoint(dir: &Path, tm: &TrainModel) -> Result<Option<(Vec<Moments>, State)>> {
    let Some(step) = checkpoint_steps(dir).pop() else {
        return Ok(None);
    };
    let ck = dir.join(format!("checkpoint-{step}"));
    let params = read_tensors(&ck.join("params.safetensors"))?;
    tm.set_values(&params)?;
    let ms = read_tensors(&ck.join("moments.safetensors"))?;
    let moments = tm
        .params
        .iter()
        .map(|p| {
            let m = ms.get(&format!("m.{}", p.name)).cloned();
            let v = ms.get(&format!("v.{}", p.name)).cloned();
            match (m, v) {
                (Some(m), Some(v)) => Ok(Moments { m, v }),
                _ => Err(Error::Invalid {
                    path: ck.clone(),
                    msg: format!("no optimizer moments for {}", p.name),
                }),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let sp = ck.join("state.json");
    let state: State =
        serde_json::from_slice(&std::fs::read(&sp).map_err(io(&sp))?).map_err(|e| {
            Error::Invalid {
                path: sp.clone(),
                msg: e.to_string(),
            }
        })?;
    Ok(Some((moments, state)))
}

/// Drops metric lines of steps after `step` (they are recomputed, identically, after a resume).
fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<StepReport>(l).is_ok_and(|r| r.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    herd_model::io::atomic_write(path, kept.as_bytes())?;
    Ok(())
}

/// Trains `tm` on `train`, evaluating on `val`, in `dir` (resuming from its newest checkpoint
/// when `resume`). `on_step` sees every step's report.
pub fn train(
    tm: &mut TrainModel,
    train: &[Sequence],
    val: &[Sequence],
    cfg: &TrainConfig,
    dir: &Path,
    resume: bool,
    on_step: &mut dyn FnMut(&StepReport),
) -> Result<Summary> {
    if train.is_empty() {
        return Err(Error::Usage("no training sequences".into()));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let total = total_steps(train.len(), cfg);
    let mut moments = vec![Moments::default(); tm.params.len()];
    let mut state = State {
        step: 0,
        rng: Rng::new(cfg.seed).state(),
        tokens: 0,
        elapsed: 0.0,
    };
    let mut resumed_from = None;
    if resume && let Some((m, s)) = load_checkpoint(dir, tm)? {
        moments = m;
        resumed_from = Some(s.step);
        state = s;
    }
    let metrics_path = dir.join("metrics.jsonl");
    if resumed_from.is_some() || resume {
        truncate_metrics(&metrics_path, state.step)?;
    } else {
        let _ = std::fs::remove_file(&metrics_path);
    }
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(io(&metrics_path))?;
    let mut rng = Rng::from_state(state.rng);
    let first_eval = if state.step == 0 {
        eval_loss(tm, val, cfg.batch_size)?
    } else {
        None
    };
    let mut last_eval = first_eval;
    let t_start = Instant::now();
    let elapsed0 = state.elapsed;
    let accum = cfg.grad_accum.max(1);
    while state.step < total {
        let step = state.step;
        let batches: Vec<Batch> = (0..accum)
            .map(|a| Batch::new(&micro_batch(train, cfg, step * accum + a)))
            .collect();
        let targets: usize = batches.iter().map(Batch::targets).sum();
        let mut grads = crate::optim::zero_gradients(tm);
        let mut loss_total = 0f64;
        for b in &batches {
            if b.targets() == 0 {
                continue;
            }
            let (bb, t) = (b.ids.len(), b.ids.first().map_or(0, Vec::len));
            tm.set_dropout(&mut rng, bb, t)?;
            // The step's loss is the mean over all its target tokens.
            let scale = 1.0 / targets.max(1) as f64;
            let native = crate::native::loss_and_gradients(tm, b, scale, cfg.grad_checkpointing)?;
            let (loss, g) = if let Some(r) = native {
                r
            } else if cfg.grad_checkpointing {
                crate::recompute::loss_and_gradients(tm, b, scale)?
            } else {
                let logits = tm.model.forward(&b.ids_tensor()?, &b.layout, None)?;
                let loss = loss_sum(&logits, b)?;
                (loss.to_scalar::<f32>()?, gradients(tm, &loss, scale)?)
            };
            loss_total += loss as f64;
            for (acc, gi) in grads.iter_mut().zip(g) {
                acc.iter_mut().zip(gi).for_each(|(a, x)| *a += x);
            }
            state.tokens += b.tokens() as u64;
        }
        let grad_norm = match cfg.max_grad_norm {
            Some(max) => clip_grad_norm(&mut grads, max),
            None => grads
                .iter()
                .flatten()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt(),
        };
        let lr = cfg.optimizer.lr * cfg.schedule.factor(step, cfg.warmup_steps, total);
        apply(
            tm,
            &grads,
            &mut moments,
            &cfg.optimizer,
            lr,
            step as u64 + 1,
        )?;
        state.step += 1;
        state.rng = rng.state();
        state.elapsed = elapsed0 + t_start.elapsed().as_secs_f64();
        let is_last = state.step == total;
        let eval = if is_last || (cfg.eval_every > 0 && state.step.is_multiple_of(cfg.eval_every)) {
            let e = eval_loss(tm, val, cfg.batch_size)?;
            last_eval = e.or(last_eval);
            e
        } else {
            None
        };
        let report = StepReport {
            step: state.step,
            total_steps: total,
            loss: loss_total / targets.max(1) as f64,
            lr,
            grad_norm,
            tokens: state.tokens,
            tokens_per_second: state.tokens as f64 / state.elapsed.max(1e-9),
            elapsed: state.elapsed,
            eval_loss: eval,
        };
        let line = serde_json::to_string(&report).map_err(|e| Error::Usage(e.to_string()))?;
        writeln!(metrics, "{line}").map_err(io(&metrics_path))?;
        metrics.flush().map_err(io(&metrics_path))?;
        on_step(&report);
        if is_last || (cfg.save_every > 0 && state.step.is_multiple_of(cfg.save_every)) {
            save_checkpoint(dir, tm, &moments, &state)?;
        }
    }
    Ok(Summary {
        steps: state.step,
        first_eval_loss: first_eval,
        final_eval_loss: last_eval,
        resumed_from,
    })
}
