use metaprompt::*;

fn cfg(algorithm: i32, threads: i64) -> Config {
    let mut c = Config::new().unwrap();
    c.set_int(CFG_MODEL_PROMPT_LEN, 2).unwrap()
        .set_int(CFG_MODEL_HIDDEN_WIDTH, 16).unwrap()
        .set_int(CFG_META_ALGORITHM, algorithm as i64).unwrap()
        .set_int(CFG_META_SCOPE, SCOPE_PROMPT_HEAD as i64).unwrap()
        .set_float(CFG_META_INNER_LR, 0.01).unwrap()
        .set_int(CFG_DATA_SHOTS, 5).unwrap()
        .set_int(CFG_DATA_QUERIES, 5).unwrap()
        .set_int(CFG_THREADS, threads).unwrap();
    c
}

fn setup(c: &Config) -> (Model, Prompt) {
    let m = Model::new(Some(c)).unwrap();
    let mut p = Prompt::new(&m).unwrap();
    p.init(PROMPT_INIT_NORMAL, 0.1, 0).unwrap();
    (m, p)
}

#[test]
fn step_evaluate_adapt() {
    let c = cfg(META_MAML, 1);
    let (mut m, mut p) = setup(&c);
    let p0 = p.values().unwrap();
    let mut s = Sampler::sinusoid(Some(&c)).unwrap();
    let tasks: Vec<Task> = (0..4).map(|_| s.next().unwrap()).collect();
    let refs: Vec<&Task> = tasks.iter().collect();
    let mut meta = Meta::new(&mut m, Some(&mut p), Some(&c)).unwrap();
    let st = meta.step(&refs).unwrap();
    assert!(st.loss_before > 0.0 && st.acc_before.is_nan());
    assert_eq!(meta.step_count().unwrap(), 1);
    assert_ne!(meta.prompt().unwrap().values().unwrap(), p0);
    let (mean, ci) = meta.evaluate(&s, 1000, 10).unwrap();
    assert!(mean > 0.0 && ci > 0.0);
    assert!(meta.evaluate_tasks(&refs).unwrap().0 > 0.0);
    let mut out = Prompt::new(meta.model()).unwrap();
    meta.adapt(&tasks[0], Some(&mut out), None).unwrap();
    let e = meta.step(&[]).unwrap_err();
    assert_eq!(e.status, status::ERR_INVALID_ARGUMENT);
    assert!(e.message.contains("mp_meta_step"), "{}", e);
    drop(meta);
    assert_ne!(p.values().unwrap(), p0); // updated in place
}

#[test]
fn split_gradients_equal_step_and_threads_agree() {
    let (c1, c2) = (cfg(META_MAML, 1), cfg(META_MAML, 2));
    let (mut ma, mut pa) = setup(&c1);
    let (mut mb, mut pb) = setup(&c2);
    let s = Sampler::sinusoid(Some(&c1)).unwrap();
    let tasks: Vec<Task> = (0..3).map(|i| s.episode(i).unwrap()).collect();
    let refs: Vec<&Task> = tasks.iter().collect();
    {
        let mut a = Meta::new(&mut ma, Some(&mut pa), Some(&c1)).unwrap();
        let mut b = Meta::new(&mut mb, Some(&mut pb), Some(&c2)).unwrap();
        a.step(&refs).unwrap();
        b.compute_gradients(&refs).unwrap();
        let g = b.gradients().unwrap();
        assert_eq!(g.len(), b.gradient_size().unwrap());
        b.set_gradients(&g).unwrap();
        b.apply_gradients().unwrap();
        assert_eq!(b.apply_gradients().unwrap_err().status, status::ERR_STATE);
    }
    assert_eq!(pa.values().unwrap(), pb.values().unwrap());
}

#[test]
fn metasgd_progress_and_checkpoint() {
    let c = cfg(META_METASGD, 1);
    let (mut m, mut p) = setup(&c);
    let s = Sampler::sinusoid(Some(&c)).unwrap();
    let path = std::env::temp_dir().join(format!("mp-rust-meta-{}.ckpt", std::process::id()));
    let path = path.to_str().unwrap().to_string();
    {
        let mut meta = Meta::new(&mut m, Some(&mut p), Some(&c)).unwrap();
        assert!(meta.inner_lr().unwrap().iter().all(|&r| (r - 0.01).abs() < 1e-7));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        meta.set_progress(Some(Box::new(move |d, t| {
            seen2.lock().unwrap().push((d, t));
            false
        }))).unwrap();
        meta.evaluate(&s, 0, 3).unwrap();
        assert_eq!(seen.lock().unwrap().last().unwrap().0, 3);
        meta.set_progress(Some(Box::new(|_, _| true))).unwrap();
        assert_eq!(meta.evaluate(&s, 0, 3).unwrap_err().status, status::ERR_CANCELLED);
        let named: Progress = Box::new(|_, _| false); // the alias is public
        meta.set_progress(Some(named)).unwrap();
        meta.set_progress(None).unwrap();
        assert_eq!(meta.set_eval_steps(-2).unwrap_err().status, status::ERR_RANGE);
        let t = s.episode(0).unwrap();
        meta.step(&[&t]).unwrap();
        meta.save_checkpoint(&path).unwrap();
    }
    let (mut m2, mut p2) = setup(&c);
    let mut meta2 = Meta::new(&mut m2, Some(&mut p2), Some(&c)).unwrap();
    meta2.load_checkpoint(&path).unwrap();
    assert_eq!(meta2.step_count().unwrap(), 1);
    assert_eq!(meta2.prompt().unwrap().values().unwrap(), p.values().unwrap());
    std::fs::remove_file(&path).unwrap();
}

fn steps(meta: &mut Meta, s: &mut Sampler, n: usize) {
    for _ in 0..n {
        let tasks: Vec<Task> = (0..3).map(|_| s.next().unwrap()).collect();
        let refs: Vec<&Task> = tasks.iter().collect();
        meta.step(&refs).unwrap();
    }
}

#[test]
fn checkpoint_with_sampler_resumes_bit_for_bit() {
    let c = cfg(META_MAML, 1);
    let path = std::env::temp_dir().join(format!("mp-rust-sampler-{}.ckpt", std::process::id()));
    let path = path.to_str().unwrap().to_string();
    let (mut ma, mut pa) = setup(&c);
    let mut sa = Sampler::sinusoid(Some(&c)).unwrap();
    {
        let mut a = Meta::new(&mut ma, Some(&mut pa), Some(&c)).unwrap();
        steps(&mut a, &mut sa, 4);
    }
    let (mut mb, mut pb) = setup(&c);
    let mut sb = Sampler::sinusoid(Some(&c)).unwrap();
    {
        let mut b = Meta::new(&mut mb, Some(&mut pb), Some(&c)).unwrap();
        steps(&mut b, &mut sb, 2);
        b.save_checkpoint_with_sampler(&path, &sb).unwrap();
    }
    let (mut mc, mut pc) = setup(&c);
    let mut sc = Sampler::sinusoid(Some(&c)).unwrap();
    {
        let mut m = Meta::new(&mut mc, Some(&mut pc), Some(&c)).unwrap();
        m.load_checkpoint_with_sampler(&path, &mut sc).unwrap();
        assert_eq!(sc.position().unwrap(), 6);
        assert_eq!(m.step_count().unwrap(), 2);
        steps(&mut m, &mut sc, 2);
        // Another seed: refused, nothing changes.
        let mut oc = Config::new().unwrap();
        oc.set_int(CFG_SEED, 5).unwrap().set_int(CFG_DATA_SHOTS, 5).unwrap().set_int(CFG_DATA_QUERIES, 5).unwrap();
        let mut other = Sampler::sinusoid(Some(&oc)).unwrap();
        other.set_position(1).unwrap();
        let e = m.load_checkpoint_with_sampler(&path, &mut other).unwrap_err();
        assert_eq!(e.status, status::ERR_SHAPE_MISMATCH);
        assert!(e.message.contains("mp_checkpoint_load_with_sampler") && e.message.contains("seed"), "{}", e);
        assert_eq!(other.position().unwrap(), 1);
        assert_eq!(m.step_count().unwrap(), 4);
    }
    assert_eq!(sc.position().unwrap(), sa.position().unwrap());
    assert_eq!(pc.values().unwrap(), pa.values().unwrap());
    assert_eq!(mc.params().unwrap(), ma.params().unwrap());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn hyper_parameters_change_between_steps() {
    // A FOMAML -> MAML switch and a new outer rate in place equal a run
    // created with them from the start when no step ran before the change.
    let c = cfg(META_FOMAML, 1);
    let (mut ma, mut pa) = setup(&c);
    let mut sa = Sampler::sinusoid(Some(&c)).unwrap();
    {
        let mut a = Meta::new(&mut ma, Some(&mut pa), Some(&c)).unwrap();
        assert_eq!(a.get_int(CFG_META_ALGORITHM).unwrap(), META_FOMAML as i64);
        assert_eq!(a.get_int(CFG_THREADS).unwrap(), 1);
        a.set_int(CFG_META_ALGORITHM, META_MAML as i64).unwrap().set_float(CFG_META_OUTER_LR, 5e-4).unwrap();
        assert_eq!(a.get_float(CFG_META_OUTER_LR).unwrap(), 5e-4);
        steps(&mut a, &mut sa, 2);
        let e = a.set_int(CFG_META_SCOPE, SCOPE_ALL as i64).unwrap_err();
        assert_eq!(e.status, status::ERR_UNSUPPORTED);
        assert!(e.message.contains("mp_meta_set_int") && e.message.contains("meta.scope"), "{}", e);
        let e = a.set_float(CFG_META_OUTER_LR, f64::NAN).unwrap_err();
        assert_eq!(e.status, status::ERR_NOT_FINITE);
        assert_eq!(a.get_float(CFG_META_OUTER_LR).unwrap(), 5e-4);
        assert_eq!(a.get_int(CFG_META_INNER_LR).unwrap_err().status, status::ERR_INVALID_ARGUMENT);
    }
    let mut c2 = cfg(META_MAML, 1);
    c2.set_float(CFG_META_OUTER_LR, 5e-4).unwrap();
    let (mut mb, mut pb) = setup(&c2);
    let mut sb = Sampler::sinusoid(Some(&c2)).unwrap();
    {
        let mut b = Meta::new(&mut mb, Some(&mut pb), Some(&c2)).unwrap();
        steps(&mut b, &mut sb, 2);
    }
    assert_eq!(pa.values().unwrap(), pb.values().unwrap());
}
