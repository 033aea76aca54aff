//! Fits y = 2x - 1 with a linear model by gradient descent on the tape:
//! leaves, ops, backward, gradients and reset in a training loop.
//!   cargo run --example tape
use metaprompt::*;

fn main() -> Result<()> {
    println!("libmetaprompt {} (OpenBLAS core {}), linked from {}", version_string(),
             blas_corename(), linked_from());
    let xs: Vec<f32> = (0..16).map(|i| i as f32 / 8.0 - 1.0).collect();
    let ys: Vec<f32> = xs.iter().map(|x| 2.0 * x - 1.0).collect();
    let (mut w, mut b) = (0.0f32, 0.0f32);
    let mut tape = Tape::new()?;
    for step in 0..200 {
        tape.reset()?; // forgets last step's variables, keeps the memory
        let x = tape.leaf(16, 1, &xs, false)?;
        let y = tape.leaf(16, 1, &ys, false)?;
        let wv = tape.leaf(1, 1, &[w], true)?;
        let bv = tape.leaf(1, 1, &[b], true)?;
        let xw = tape.matmul(x, wv, false, false)?;
        let pred = tape.add(xw, bv)?;
        let loss = tape.mse(pred, y)?;
        tape.backward(loss, false)?;
        let (gw, gb) = (tape.grad(wv)?, tape.grad(bv)?);
        w -= 0.5 * tape.scalar(gw)?;
        b -= 0.5 * tape.scalar(gb)?;
        if step % 50 == 0 || step == 199 {
            println!("step {:3}  loss {:.6}  w {:.4}  b {:.4}", step, tape.scalar(loss)?, w, b);
        }
    }
    // Errors carry the status and the library's message.
    let v = tape.fill(2, 3, 1.0)?;
    if let Err(e) = tape.matmul(v, v, false, false) {
        println!("expected error: {}", e);
    }
    Ok(())
}
