//! Where one batch runs: an ONNX Runtime session (fp32, or CUDA) or an OpenVINO request
//! (bf16), chosen per load from the requested precision and the CPU's features.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use ort::session::Session;
use ort::value::TensorRef;
use tokenizers::Encoding;

use super::pooling::{Head, pool};
use super::precision::{Compute, CpuFeatures, Precision, auto_choice};
use super::{Device, EmbedConfig, EmbedError, EmbedStats, dequant, openvino};

/// The process-wide ONNX Runtime environment (ONNX Runtime allows one per process).
static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn environment(library: &Path) -> Result<ort::environment::Environment, EmbedError> {
    if ENVIRONMENT.get().is_none() && !library.exists() {
        return Err(EmbedError::LibraryMissing(library.to_path_buf()));
    }
    ENVIRONMENT
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|e| e.to_string())?
                .with_name("mongo2qdrant")
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|reason| EmbedError::LibraryLoad {
            path: library.to_path_buf(),
            reason,
        })
}

/// Where one batch runs: an ONNX Runtime session, or an OpenVINO request.
pub(super) enum Runner {
    Ort(Box<Session>),
    OpenVino(openvino::Request),
}

/// The runtime and its runners for `config`: bf16 in OpenVINO where chosen, else ONNX Runtime.
pub(super) fn runners(
    config: &EmbedConfig,
    model_path: &Path,
) -> Result<(Compute, Vec<Mutex<Runner>>), EmbedError> {
    let features = CpuFeatures::detect();
    let (want, reason) = match (config.precision, config.device) {
        (Precision::Bf16, Device::Cuda) => return Err(EmbedError::Precision(
            "--precision bf16 is a CPU path (OpenVINO); with --device cuda use --precision auto or fp32".into(),
        )),
        (_, Device::Cuda) => (Precision::Fp32, "the GPU computes in fp32".to_owned()),
        (Precision::Auto, Device::Cpu) => auto_choice(features, config.openvino_library.is_file()),
        (p, Device::Cpu) => (p, "asked for with --precision".to_owned()),
    };
    // An explicit bf16 is part of the content identity: vectors computed in fp32 must never
    // carry it, so a CPU without bf16 instructions refuses it (auto picks fp32 there).
    if config.precision == Precision::Bf16 && !features.computes_bf16() {
        return Err(EmbedError::Precision(no_bf16(&format!(
            "this CPU has neither (its best: {})",
            features.isa(false)
        ))));
    }
    if want == Precision::Bf16 {
        match openvino_runners(config, model_path) {
            Ok((actual, _)) if config.precision == Precision::Bf16 && actual != "bf16" => {
                return Err(EmbedError::Precision(no_bf16(&format!(
                    "OpenVINO computes in {actual} on this CPU"
                ))));
            }
            Ok((actual, runners)) => {
                // `auto` on a CPU OpenVINO runs in f32 (its flags overstated): say so.
                let bf16 = actual == "bf16";
                let compute = Compute {
                    precision: if bf16 { "bf16" } else { "fp32" }.into(),
                    runtime: "openvino".into(),
                    isa: features.isa(bf16).into(),
                    reason,
                };
                return Ok((compute, runners));
            }
            Err(e) if config.precision == Precision::Bf16 => return Err(e),
            Err(e) => tracing::warn!(error = %e, "bf16 unavailable, computing in fp32"),
        }
    }
    let env = environment(&config.ort_library)?;
    let mut sessions = Vec::with_capacity(config.sessions.max(1));
    for _ in 0..config.sessions.max(1) {
        // No memory-pattern planning: with a different shape in every batch (dynamic
        // padding) it only grows memory (measured: +30% RSS, no speed gain).
        let mut builder = Session::builder(&env)?
            .with_memory_pattern(false)
            .map_err(ort::Error::from)?;
        if config.device == Device::Cuda {
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(|e| EmbedError::Cuda(e.to_string()))?;
        }
        let session = builder
            .with_intra_threads(config.intra_threads.max(1))
            .map_err(ort::Error::from)?
            .with_inter_threads(1)
            .map_err(ort::Error::from)?
            .commit_from_file(model_path)?;
        sessions.push(Mutex::new(Runner::Ort(Box::new(session))));
    }
    let compute = Compute {
        precision: "fp32".into(),
        runtime: "onnxruntime".into(),
        isa: if config.device == Device::Cuda {
            "cuda"
        } else {
            features.isa(false)
        }
        .into(),
        reason,
    };
    Ok((compute, sessions))
}

/// The refusal of an explicit `--precision bf16` where it cannot be computed, and the fix.
fn no_bf16(why: &str) -> String {
    format!(
        "--precision bf16 needs a CPU that computes bf16 (the avx512_bf16 or amx_bf16 flag): {why}; use --precision fp32, or auto (the default), which picks what this CPU computes"
    )
}

/// One compiled model with a stream per session, and a request per session; with the
/// inference precision OpenVINO settled on.
fn openvino_runners(
    config: &EmbedConfig,
    model_path: &Path,
) -> Result<(String, Vec<Mutex<Runner>>), EmbedError> {
    let lib = &config.openvino_library;
    if !lib.is_file() {
        return Err(EmbedError::OpenVinoMissing(lib.clone()));
    }
    let bytes = std::fs::read(model_path)
        .map_err(|_| EmbedError::ModelMissing(model_path.to_path_buf()))?;
    // int8 weight chains as the plain fp32 weights they compute (module dequant: why).
    let bytes = match dequant::fold_int8_weights(&bytes) {
        Ok(Some(folded)) => folded,
        Ok(None) => bytes,
        Err(e) => {
            tracing::debug!(error = %e, "model not folded; OpenVINO reads it as it is");
            bytes
        }
    };
    let sessions = config.sessions.max(1);
    let compiled = openvino::compile(lib, &bytes, "bf16", sessions, config.intra_threads.max(1))
        .map_err(|e| EmbedError::OpenVino(lib.clone(), e))?;
    let actual = compiled
        .property("INFERENCE_PRECISION_HINT")
        .map_err(|e| EmbedError::OpenVino(lib.clone(), e))?;
    let compiled = std::sync::Arc::new(compiled);
    let runners = (0..sessions)
        .map(|_| {
            compiled
                .request()
                .map(|r| Mutex::new(Runner::OpenVino(r)))
                .map_err(|e| EmbedError::OpenVino(lib.clone(), e))
        })
        .collect::<Result<_, _>>()?;
    Ok((actual, runners))
}

/// Which of the tensors this tool builds a graph input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Input {
    Ids,
    Mask,
    Types,
}

impl Input {
    /// The tensor a graph input named `name` takes; `None`: not one this tool feeds.
    pub(super) fn of(name: &str) -> Option<Input> {
        match name {
            "input_ids" => Some(Input::Ids),
            "attention_mask" => Some(Input::Mask),
            "token_type_ids" => Some(Input::Types),
            _ => None,
        }
    }
}

/// What a batch needs to know of its graph: the inputs it takes (name and tensor, in the
/// graph's order) and how its token vectors are pooled.
#[derive(Debug, Clone)]
pub(super) struct Feed {
    pub(super) inputs: Vec<(String, Input)>,
    pub(super) head: Head,
}

/// One inference call on `batch`, padded to its longest member.
pub(super) fn run_batch(
    runner: &mut Runner,
    batch: &[&Encoding],
    feed: &Feed,
) -> Result<(Vec<Vec<f32>>, EmbedStats), EmbedError> {
    let n = batch.len();
    let len = batch.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
    let mut ids = vec![0i64; n * len];
    let mut mask = vec![0i64; n * len];
    let mut types = vec![0i64; n * len];
    let mut real = 0u64;
    for (r, e) in batch.iter().enumerate() {
        for (c, (&id, &m)) in e.get_ids().iter().zip(e.get_attention_mask()).enumerate() {
            ids[r * len + c] = i64::from(id);
            mask[r * len + c] = i64::from(m);
            real += u64::from(m);
        }
    }
    let t = Instant::now();
    let head = feed.head;
    let vectors = match runner {
        Runner::Ort(session) => {
            let shape = [n, len];
            let mut inputs = Vec::with_capacity(feed.inputs.len());
            for (name, input) in &feed.inputs {
                let data = match input {
                    Input::Ids => &ids[..],
                    Input::Mask => &mask[..],
                    Input::Types => &types[..],
                };
                inputs.push((name.as_str(), TensorRef::from_array_view((shape, data))?));
            }
            let outputs = session.run(inputs)?;
            let (shape, data) = outputs[0].try_extract_tensor::<f32>()?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            pool(head, &dims, data, &mask, n, len)?
        }
        Runner::OpenVino(request) => {
            let mask_in = mask.clone();
            let (mut ids, mut mask, mut types) = (
                Some(&mut ids[..]),
                Some(&mut mask[..]),
                Some(&mut types[..]),
            );
            let mut inputs = Vec::with_capacity(feed.inputs.len());
            for (name, input) in &feed.inputs {
                let data = match input {
                    Input::Ids => ids.take(),
                    Input::Mask => mask.take(),
                    Input::Types => types.take(),
                };
                if let Some(data) = data {
                    inputs.push((name.as_str(), data));
                }
            }
            request
                .run(&mut inputs, n, len, |dims, data| {
                    pool(head, dims, data, &mask_in, n, len)
                })
                .map_err(EmbedError::Inference)??
        }
    };
    let stats = EmbedStats {
        texts: n as u64,
        tokens: real,
        padded_tokens: (n * len) as u64,
        tokenize_secs: 0.0,
        infer_secs: t.elapsed().as_secs_f64(),
    };
    Ok((vectors, stats))
}
