//! Creates a model through the binding and prints where the library came
//! from: it runs only if the loader found libmetaprompt.
fn main() {
    let model = metaprompt::Model::new(None).expect("model");
    let n = model.num_params().expect("num_params");
    println!(
        "dependent crate: libmetaprompt {} from {}, a default model of {} parameters",
        metaprompt::version_string(),
        metaprompt::linked_from(),
        n
    );
}
