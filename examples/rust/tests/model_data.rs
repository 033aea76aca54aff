use metaprompt::*;

fn small_mlp() -> Model {
    let mut cfg = Config::new().unwrap();
    cfg.set_int(CFG_MODEL_INPUT_DIM, 3).unwrap();
    cfg.set_int(CFG_MODEL_OUTPUT_DIM, 2).unwrap();
    cfg.set_int(CFG_MODEL_HIDDEN_WIDTH, 8).unwrap();
    cfg.set_int(CFG_MODEL_PROMPT_LEN, 2).unwrap();
    cfg.set_int(CFG_MODEL_TASK, TASK_CLASSIFICATION as i64).unwrap();
    Model::new(Some(&cfg)).unwrap()
}

#[test]
fn model_predict_loss_params() {
    let mut m = small_mlp();
    let mut p = Prompt::new(&m).unwrap();
    assert_eq!(m.prompt_shape().unwrap(), p.shape().unwrap());
    assert_eq!(m.input_dim().unwrap(), 3);
    p.init(PROMPT_INIT_NORMAL, 0.5, 1).unwrap();
    let x: Vec<f32> = (0..12).map(|i| i as f32 / 6.0 - 1.0).collect();
    let out = m.predict(&x, Some(&p)).unwrap();
    assert_eq!(out.len(), 8);
    let l = m.loss(&x, Some(&[0, 1, 1, 0]), None, Some(&p)).unwrap();
    assert!(l > 0.0);
    let e = m.loss(&x, Some(&[0, 1, 1, 9]), None, Some(&p)).unwrap_err();
    assert_eq!(e.status, status::ERR_RANGE);
    let w = m.params().unwrap();
    assert_eq!(w.len(), m.num_params().unwrap());
    let copy = m.try_clone().unwrap();
    m.set_params(&vec![0.0; w.len()]).unwrap();
    assert_eq!(copy.params().unwrap(), w);
    assert_eq!(m.set_params(&[1.0]).unwrap_err().status, status::ERR_SHAPE_MISMATCH);
    let mut q = Prompt::new(&m).unwrap();
    q.copy_from(&p).unwrap();
    assert_eq!(q.values().unwrap(), p.values().unwrap());
    assert_eq!(q.set_values(&[f32::NAN; 6][..q.values().unwrap().len()]).unwrap_err().status,
               status::ERR_NOT_FINITE);
}

#[test]
fn checkpoint_roundtrip() {
    let dir = std::env::temp_dir().join(format!("mp-rust-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.ckpt");
    let path = path.to_str().unwrap();
    let m = small_mlp();
    let mut p = Prompt::new(&m).unwrap();
    p.init(PROMPT_INIT_UNIFORM, 1.0, 3).unwrap();
    m.save_checkpoint(path, Some(&p)).unwrap();
    let mut m2 = Model::from_checkpoint(path).unwrap();
    assert_eq!(m2.params().unwrap(), m.params().unwrap());
    let mut p2 = Prompt::new(&m2).unwrap();
    m2.load_checkpoint(path, Some(&mut p2)).unwrap();
    assert_eq!(p2.values().unwrap(), p.values().unwrap());
    let e = m2.load_checkpoint("/nonexistent/x.ckpt", None).unwrap_err();
    assert_eq!(e.status, status::ERR_IO);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dataset_sampler_tasks() {
    let x: Vec<f32> = (0..48 * 4).map(|i| (i % 7) as f32).collect();
    let labels: Vec<i32> = (0..48).map(|i| i / 8).collect();
    let mut ds = Dataset::from_labels(&x, 4, &labels).unwrap();
    assert_eq!(ds.len().unwrap(), 48);
    assert_eq!(ds.num_classes().unwrap(), 6);
    assert_eq!(ds.get(9).unwrap(), (x[36..40].to_vec(), 1));
    assert_eq!(ds.class_indices(1).unwrap(), (8..16).collect::<Vec<usize>>());
    let e = ds.class_indices(6).unwrap_err();
    assert_eq!(e.status, status::ERR_RANGE);
    assert!(e.message.contains("cls is 6"), "{}", e.message);
    ds.set_sample_shape(&[2, 2]).unwrap();
    assert_eq!(ds.sample_shape().unwrap(), vec![2, 2]);
    assert_eq!(ds.select_classes(&[1, 3]).unwrap().len().unwrap(), 16);
    assert_eq!(ds.get(1000).unwrap_err().status, status::ERR_RANGE);

    let mut cfg = Config::new().unwrap();
    cfg.set_int(CFG_DATA_WAYS, 3).unwrap().set_int(CFG_DATA_SHOTS, 2).unwrap();
    cfg.set_int(CFG_DATA_QUERIES, 3).unwrap();
    let mut s = Sampler::new(&ds, Some(&cfg)).unwrap();
    assert_eq!(s.info().unwrap(), (3, 2, 3, 4));
    let e0 = s.episode(0).unwrap();
    let n0 = s.next().unwrap();
    assert_eq!(s.position().unwrap(), 1);
    assert_eq!(e0.support().unwrap(), n0.support().unwrap());
    let mut t = s.episode(4).unwrap();
    s.episode_into(0, &mut t).unwrap();
    assert_eq!(t.query().unwrap(), e0.query().unwrap());
    let sz = t.sizes().unwrap();
    assert_eq!((sz.n_support, sz.n_query, sz.n_way), (6, 9, 3));
    // Episodes and the position from several threads at once (the sampler
    // is Sync: data.h documents both as thread-safe reads).
    let firsts: Vec<Vec<f32>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2).map(|_| sc.spawn(|| {
            assert_eq!(s.position().unwrap(), 1);
            s.episode(7).unwrap().support().unwrap().0
        })).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(firsts[0], firsts[1]);

    cfg.set_int(CFG_DATA_WAYS, 10).unwrap();
    assert_eq!(Sampler::new(&ds, Some(&cfg)).unwrap_err().status, status::ERR_RANGE);
}

#[test]
fn sinusoid_tasks_and_regression() {
    let t = Task::sinusoid(1, 2, 10, 5).unwrap();
    let (a, p) = t.sinusoid_params().unwrap();
    let (x, y) = t.support().unwrap();
    match y {
        Outputs::Targets(y) => {
            for (xi, yi) in x.iter().zip(&y) {
                assert!((a as f32 * (xi - p as f32).sin() - yi).abs() < 1e-4);
            }
        }
        Outputs::Labels(_) => panic!("sinusoid tasks are regression tasks"),
    }
    let r = Task::regression(1, 1, &[0.0, 1.0], &[0.0, 2.0], &[3.0], &[6.0]).unwrap();
    assert_eq!(r.sizes().unwrap().target_dim, 1);
    let c = Task::classification(1, 2, &[0.0, 1.0], &[0, 1], &[0.5], &[1]).unwrap();
    assert_eq!(c.sinusoid_params().unwrap_err().status, status::ERR_STATE);
    let s = Sampler::sinusoid(None).unwrap();
    assert_eq!(s.info().unwrap().0, 0);
}
