use metaprompt::*;

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn leaf_read_matmul() {
    let mut t = Tape::new().unwrap();
    let a = t.leaf(2, 3, &[1., 2., 3., 4., 5., 6.], false).unwrap();
    let b = t.leaf(3, 1, &[1., 0., -1.], false).unwrap();
    assert_eq!(t.shape(a).unwrap(), (2, 3));
    let c = t.matmul(a, b, false, false).unwrap();
    assert_eq!(t.read(c).unwrap(), vec![-2., -2.]);
    let ct = t.matmul(b, a, true, true).unwrap();
    assert_eq!(t.shape(ct).unwrap(), (1, 2));
    let mut small = [0f32; 1];
    let e = t.read_into(a, &mut small).unwrap_err();
    assert_eq!(e.status, status::ERR_BUFFER_TOO_SMALL);
    assert!(e.message.contains('6'), "needed size named: {}", e);
}

#[test]
fn gradients_first_and_second_order() {
    let x0 = [0.5f32, -1.0, 2.0];
    let mut t = Tape::new().unwrap();
    let x = t.leaf(1, 3, &x0, true).unwrap();
    let sq = t.square(x).unwrap();
    let cube = t.mul(sq, x).unwrap();
    let s = t.sum(cube, REDUCE_ALL).unwrap();
    let loss = t.scale(s, 1.0 / 3.0).unwrap();
    t.backward(loss, true).unwrap();
    let g = t.grad(x).unwrap();
    let want: Vec<f32> = x0.iter().map(|v| v * v).collect();
    assert!(close(&t.read(g).unwrap(), &want, 1e-5));
    let gs = t.sum(g, REDUCE_ALL).unwrap();
    t.backward(gs, false).unwrap();
    let h = t.grad(x).unwrap();
    let want: Vec<f32> = x0.iter().map(|v| 2.0 * v).collect();
    assert!(close(&t.read(h).unwrap(), &want, 1e-5));
}

#[test]
fn cross_entropy_and_errors_leave_tape_unchanged() {
    let mut t = Tape::new().unwrap();
    let logits = t.leaf(2, 3, &[0.; 6], false).unwrap();
    let ce = t.cross_entropy(logits, &[0, 2]).unwrap();
    assert!((t.scalar(ce).unwrap() - 3f32.ln()).abs() < 1e-5);
    let nodes = t.stat(STAT_NODES).unwrap();
    let e = t.matmul(logits, logits, false, false).unwrap_err();
    assert_eq!(e.status, status::ERR_SHAPE_MISMATCH);
    assert!(e.message.contains("mp_matmul"), "{}", e);
    assert_eq!(t.error(), e.message);
    assert_eq!(t.stat(STAT_NODES).unwrap(), nodes);
    assert_eq!(t.relu(Var(9999)).unwrap_err().status, status::ERR_UNKNOWN_VARIABLE);
    assert_eq!(t.cross_entropy(logits, &[0, 3]).unwrap_err().status, status::ERR_RANGE);
    t.reset().unwrap();
    assert_eq!(t.stat(STAT_NODES).unwrap(), 0);
    assert!(t.read(logits).is_err());
}

#[test]
fn stale_and_foreign_ids_are_rejected() {
    let mut t = Tape::new().unwrap();
    let mut u = Tape::new().unwrap();
    let a = t.leaf(1, 2, &[1., 2.], false).unwrap();
    t.reset().unwrap();
    let b = t.leaf(1, 2, &[3., 4.], false).unwrap(); // the slot a had: a still fails
    assert_ne!(a, b);
    let e = t.read(a).unwrap_err();
    assert_eq!(e.status, status::ERR_UNKNOWN_VARIABLE);
    assert!(e.message.contains("before the last mp_tape_reset"), "{}", e);
    let mut c = u.leaf(1, 2, &[1., 2.], false).unwrap();
    if c == b {
        // both tapes drew the same tag (1 in 127): step u's
        u.reset().unwrap();
        c = u.leaf(1, 2, &[1., 2.], false).unwrap();
    }
    let e = t.relu(c).unwrap_err();
    assert_eq!(e.status, status::ERR_UNKNOWN_VARIABLE);
    assert!(e.message.contains("on another tape"), "{}", e);
    assert_eq!(t.read(b).unwrap(), vec![3., 4.]);
}

#[test]
fn every_op_callable() {
    let mut t = Tape::new().unwrap();
    let xs: Vec<f32> = (1..=8).map(|i| i as f32 / 8.0).collect();
    let x = t.leaf(2, 4, &xs, true).unwrap();
    let y = t.fill(2, 4, 1.5).unwrap();
    for f in [Tape::relu, Tape::tanh, Tape::sigmoid, Tape::gelu, Tape::exp, Tape::log, Tape::sqrt,
              Tape::square, Tape::softmax, Tape::log_softmax, Tape::transpose] {
        f(&mut t, x).unwrap();
    }
    for f in [Tape::add, Tape::sub, Tape::mul, Tape::div, Tape::mse] {
        f(&mut t, x, y).unwrap();
    }
    t.scale(x, 2.0).unwrap();
    t.add_scalar(x, 1.0).unwrap();
    t.mean(x, REDUCE_PER_COL).unwrap();
    let g = t.fill(1, 4, 1.0).unwrap();
    let ln = t.layer_norm(x, Some(g), None, 1e-5).unwrap();
    assert_eq!(t.shape(ln).unwrap(), (2, 4));
    let gr = t.gather_rows(x, &[1, 0, 1]).unwrap();
    assert_eq!(t.shape(gr).unwrap(), (3, 4));
    let c = t.concat(x, y, AXIS_COLS).unwrap();
    assert_eq!(t.shape(c).unwrap(), (2, 8));
    let s = t.slice(x, AXIS_COLS, 1, 2).unwrap();
    assert_eq!(t.shape(s).unwrap(), (2, 2));
    let r = t.reshape(x, 4, 2).unwrap();
    assert_eq!(t.shape(r).unwrap(), (4, 2));
    let img = t.fill(2, 16, 1.0).unwrap();
    let w = t.fill(3, 9, 1.0).unwrap();
    let conv = t.conv2d(img, w, None, 1, 4, 4, 3, 1, 1).unwrap();
    assert_eq!(t.shape(conv).unwrap(), (2, 48));
    let mp = t.maxpool2d(conv, 3, 4, 4).unwrap();
    assert_eq!(t.shape(mp).unwrap(), (2, 12));
    let q = t.fill(6, 4, 1.0).unwrap();
    let h = t.split_heads(q, 2, 3, 2).unwrap();
    assert_eq!(t.shape(h).unwrap(), (12, 2));
    let m = t.merge_heads(h, 2, 3, 2).unwrap();
    assert_eq!(t.shape(m).unwrap(), (6, 4));
    let bm = t.batch_matmul(h, h, 4, false, true).unwrap();
    assert_eq!(t.shape(bm).unwrap(), (12, 3));
    let sq = t.square(x).unwrap();
    let l = t.sum(sq, REDUCE_ALL).unwrap();
    t.backward(l, false).unwrap();
    assert!(t.stat(STAT_HEAP_BYTES).unwrap() > 0);
    assert!(t.stat(STAT_ARENA_HIGH).unwrap() >= t.stat(STAT_ARENA_USED).unwrap());
}

#[test]
fn tapes_move_between_threads() {
    let handles: Vec<_> = (0..2)
        .map(|k| {
            let mut t = Tape::new().unwrap();
            std::thread::spawn(move || {
                let a = t.fill(8, 8, k as f32 + 1.0).unwrap();
                let c = t.matmul(a, a, false, false).unwrap();
                t.read(c).unwrap()[0]
            })
        })
        .collect();
    let got: Vec<f32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, vec![8.0, 32.0]);
}

#[test]
fn backward_wrt_prunes() {
    let mut t = Tape::new().unwrap();
    let a = t.leaf(1, 2, &[1., 2.], true).unwrap();
    let b = t.leaf(1, 2, &[3., 4.], true).unwrap();
    let ab = t.mul(a, b).unwrap();
    let loss = t.sum(ab, REDUCE_ALL).unwrap();
    t.backward_wrt(loss, &[a], false).unwrap();
    let (ga, gb) = (t.grad(a).unwrap(), t.grad(b).unwrap());
    assert_eq!(t.read(ga).unwrap(), vec![3., 4.]);
    assert_eq!(t.read(gb).unwrap(), vec![0., 0.]);
    assert_eq!(t.backward_wrt(loss, &[], false).unwrap_err().status, status::ERR_INVALID_ARGUMENT);
}
