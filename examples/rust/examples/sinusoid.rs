//! MAML on sinusoid regression (Finn et al. 2017), then adaptation to a new
//! sine wave from 10 points: the Rust version of examples/sinusoid.c.
//!   cargo run --release --example sinusoid [iters]
use metaprompt::*;

fn main() -> Result<()> {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let mut cfg = Config::new()?; // 1-40-40-1 ReLU net, no prompt
    cfg.set_int(CFG_MODEL_KIND, MODEL_MLP as i64)?
        .set_int(CFG_MODEL_TASK, TASK_REGRESSION as i64)?
        .set_int(CFG_MODEL_PROMPT_LEN, 0)?
        .set_int(CFG_MODEL_INIT, INIT_TORCH as i64)? // PyTorch's default init, as the paper
        .set_int(CFG_DATA_SHOTS, 10)? // K = 10 support points
        .set_int(CFG_META_SCOPE, SCOPE_ALL as i64)? // plain MAML: adapt every weight
        .set_float(CFG_META_INNER_LR, 0.01)?;
    let mut net = Model::new(Some(&cfg))?;
    let mut prompt = Prompt::new(&net)?;
    let mut tasks = Sampler::sinusoid(Some(&cfg))?;
    let mut adapted = net.try_clone()?;
    {
        let mut maml = Meta::new(&mut net, Some(&mut prompt), Some(&cfg))?; // MAML, Adam 1e-3
        let mut batch: Vec<Task> = (0..25).map(|i| tasks.episode(i)).collect::<Result<_>>()?;
        for it in 0..iters {
            for t in batch.iter_mut() {
                let pos = tasks.position()?;
                tasks.episode_into(pos, t)?; // refill in place, no allocation
                tasks.set_position(pos + 1)?;
            }
            let refs: Vec<&Task> = batch.iter().collect();
            let stats = maml.step(&refs)?;
            if (it + 1) % (iters / 10).max(1) == 0 {
                println!("iter {:5}  query MSE before {:.3}  after one step {:.3}", it + 1,
                         stats.loss_before, stats.loss_after);
            }
        }
        let (mse, ci) = maml.evaluate(&tasks, 1000000, 600)?; // 600 new sine waves
        println!("test MSE after adaptation: {:.3} +/- {:.3}", mse, ci);

        let wave = Task::sinusoid(7, 123456, 10, 10)?;
        let (amp, phase) = wave.sinusoid_params()?;
        maml.adapt(&wave, None, Some(&mut adapted))?;
        let grid: Vec<f32> = (0..11).map(|i| i as f32 - 5.0).collect();
        let mse_of = |m: &Model| -> Result<f64> {
            let out = m.predict(&grid, None)?;
            Ok(out.iter().zip(&grid).map(|(y, x)| {
                let d = *y as f64 - amp * (*x as f64 - phase).sin();
                d * d
            }).sum::<f64>() / grid.len() as f64)
        };
        println!("new wave A={:.2} phase={:.2}: grid MSE before {:.3}, after adaptation {:.3}",
                 amp, phase, mse_of(maml.model())?, mse_of(&adapted)?);
    }
    Ok(())
}
