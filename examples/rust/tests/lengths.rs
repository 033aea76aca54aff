//! Slice lengths the C calls cannot check (they take counts, not lengths):
//! every wrapper that derives a count from one slice checks the others, so
//! safe code gets ERR_SHAPE_MISMATCH instead of an out-of-bounds read.
use metaprompt::*;

/// The error is the library's shape-mismatch status and its message names
/// the wrapper, the argument, the expected and the received length.
fn mismatch<T: std::fmt::Debug>(r: Result<T>, func: &str, arg: &str, expected: &str, got: usize) {
    let e = r.unwrap_err();
    assert_eq!(e.status, status::ERR_SHAPE_MISMATCH, "{}", e);
    assert_eq!(e.status_name(), "MP_ERR_SHAPE_MISMATCH");
    for part in [func.to_string(), format!("'{}'", arg), format!("length {}", got), format!("expected {}", expected)] {
        assert!(e.message.contains(&part), "message {:?} lacks {:?}", e.message, part);
    }
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i % 13) as f32 / 13.0).collect()
}

#[test]
fn dataset_from_labels_checks_x() {
    // The audit's reproduction: 4 labels of dim 64 need 256 values, not 1.
    mismatch(Dataset::from_labels(&[0.5], 64, &[0, 1, 0, 1]), "Dataset::from_labels", "x", "256", 1);
    mismatch(Dataset::from_labels(&ramp(257), 64, &[0, 1, 0, 1]), "Dataset::from_labels", "x", "256", 257);
    mismatch(Dataset::from_labels(&ramp(8), 2, &[0, 1, 0, 1, 1]), "Dataset::from_labels", "x", "10", 8);
    let ds = Dataset::from_labels(&ramp(256), 64, &[0, 1, 0, 1]).unwrap();
    assert_eq!((ds.len().unwrap(), ds.dim().unwrap()), (4, 64));
    // Argument errors other than lengths still come from the library.
    assert_eq!(Dataset::from_labels(&[], 0, &[0]).unwrap_err().status, status::ERR_INVALID_ARGUMENT);
    assert_eq!(Dataset::from_labels(&[], 3, &[]).unwrap_err().status, status::ERR_INVALID_ARGUMENT);
}

#[test]
fn dataset_from_targets_checks_x_and_targets() {
    // 5 targets cannot be rows of target_dim 2.
    mismatch(Dataset::from_targets(&ramp(6), 2, &ramp(5), 2), "Dataset::from_targets", "targets",
             "a multiple of 2", 5);
    // 3 rows of targets need 3 * 4 values of x.
    mismatch(Dataset::from_targets(&ramp(4), 4, &ramp(6), 2), "Dataset::from_targets", "x", "12", 4);
    mismatch(Dataset::from_targets(&ramp(13), 4, &ramp(6), 2), "Dataset::from_targets", "x", "12", 13);
    let ds = Dataset::from_targets(&ramp(12), 4, &ramp(6), 2).unwrap();
    assert_eq!((ds.len().unwrap(), ds.target_dim().unwrap()), (3, 2));
    assert_eq!(Dataset::from_targets(&ramp(4), 4, &ramp(6), 0).unwrap_err().status,
               status::ERR_INVALID_ARGUMENT);
}

#[test]
fn task_classification_checks_both_sets() {
    let f = "Task::classification";
    mismatch(Task::classification(3, 2, &ramp(5), &[0, 1], &ramp(6), &[1, 0]), f, "support_x", "6", 5);
    mismatch(Task::classification(3, 2, &ramp(6), &[0, 1], &ramp(2), &[1, 0]), f, "query_x", "6", 2);
    mismatch(Task::classification(3, 2, &ramp(6), &[0, 1], &ramp(9), &[1, 0]), f, "query_x", "6", 9);
    // Fewer labels than rows is a mismatch too (rows are counted from labels).
    mismatch(Task::classification(3, 2, &ramp(6), &[0], &ramp(6), &[1, 0]), f, "support_x", "3", 6);
    let t = Task::classification(3, 2, &ramp(6), &[0, 1], &ramp(6), &[1, 0]).unwrap();
    let s = t.sizes().unwrap();
    assert_eq!((s.n_support, s.n_query, s.dim, s.n_way), (2, 2, 3, 2));
    assert_eq!(Task::classification(0, 2, &[], &[0], &[], &[0]).unwrap_err().status,
               status::ERR_INVALID_ARGUMENT);
}

#[test]
fn task_regression_checks_every_slice() {
    let f = "Task::regression";
    // target_dim 2: 7 support targets are not whole rows (used to be cut to 3).
    mismatch(Task::regression(1, 2, &ramp(3), &ramp(7), &ramp(2), &ramp(4)), f, "sy", "a multiple of 2", 7);
    mismatch(Task::regression(1, 2, &ramp(3), &ramp(6), &ramp(2), &ramp(3)), f, "qy", "a multiple of 2", 3);
    // 3 support rows of dim 2 need 6 values; 2 query rows need 4.
    mismatch(Task::regression(2, 2, &ramp(5), &ramp(6), &ramp(4), &ramp(4)), f, "sx", "6", 5);
    mismatch(Task::regression(2, 2, &ramp(6), &ramp(6), &ramp(1), &ramp(4)), f, "qx", "4", 1);
    mismatch(Task::regression(2, 2, &ramp(6), &ramp(6), &ramp(40), &ramp(4)), f, "qx", "4", 40);
    let t = Task::regression(2, 2, &ramp(6), &ramp(6), &ramp(4), &ramp(4)).unwrap();
    let s = t.sizes().unwrap();
    assert_eq!((s.n_support, s.n_query, s.dim, s.target_dim), (3, 2, 2, 2));
    assert_eq!(t.support().unwrap().1, Outputs::Targets(ramp(6)));
    assert_eq!(Task::regression(1, 0, &ramp(3), &ramp(3), &ramp(2), &ramp(2)).unwrap_err().status,
               status::ERR_INVALID_ARGUMENT);
}

#[test]
fn model_loss_checks_labels_targets_and_x() {
    let f = "Model::loss";
    let reg = Model::new(None).unwrap(); // 1-40-40-1 regressor
    let x = ramp(100);
    // The audit's reproduction: 100 rows need 100 targets, not 1.
    mismatch(reg.loss(&x, None, Some(&[1.0]), None), f, "targets", "100", 1);
    mismatch(reg.loss(&x, None, Some(&ramp(101)), None), f, "targets", "100", 101);
    assert!(reg.loss(&x, None, Some(&ramp(100)), None).unwrap().is_finite());

    let mut cfg = Config::new().unwrap();
    cfg.set_int(CFG_MODEL_INPUT_DIM, 3).unwrap().set_int(CFG_MODEL_OUTPUT_DIM, 2).unwrap();
    cfg.set_int(CFG_MODEL_TASK, TASK_CLASSIFICATION as i64).unwrap();
    let cls = Model::new(Some(&cfg)).unwrap();
    let x = ramp(12); // 4 rows of 3
    mismatch(cls.loss(&x, Some(&[0, 1]), None, None), f, "labels", "4", 2);
    mismatch(cls.loss(&x, Some(&[0, 1, 1, 0, 1]), None, None), f, "labels", "4", 5);
    mismatch(cls.loss(&ramp(11), Some(&[0, 1, 1, 0]), None, None), f, "x", "a multiple of 3", 11);
    assert!(cls.loss(&x, Some(&[0, 1, 1, 0]), None, None).unwrap() > 0.0);

    cfg.set_int(CFG_MODEL_TASK, TASK_REGRESSION as i64).unwrap();
    let reg2 = Model::new(Some(&cfg)).unwrap(); // output_dim 2: 4 rows need 8 targets
    mismatch(reg2.loss(&x, None, Some(&ramp(4)), None), f, "targets", "8", 4);
    assert!(reg2.loss(&x, None, Some(&ramp(8)), None).unwrap().is_finite());
}
