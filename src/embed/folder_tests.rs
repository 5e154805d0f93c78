use super::*;

/// A folder with a tokenizer, `model.onnx` (or the files `onnx`) and the JSON `files`.
fn folder(onnx: &[&str], files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("tokenizer.json"), "{}").unwrap();
    for f in onnx {
        let p = d.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"graph").unwrap();
    }
    for (name, text) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

const MODULES: &str = r#"[
  {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
  {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
]"#;

fn pooling(mode: &str) -> String {
    format!(r#"{{"word_embedding_dimension": 384, "pooling_mode_{mode}": true}}"#)
}

fn read(d: &tempfile::TempDir) -> Result<ModelFolder, EmbedError> {
    ModelFolder::read(d.path(), &Overrides::default())
}

#[test]
fn a_bare_folder_reads_as_minilm_wants_it() {
    let d = folder(&["model.onnx"], &[]);
    let f = read(&d).unwrap();
    assert_eq!(
        (f.pooling, f.normalize, f.described, f.distance),
        (Pooling::Mean, true, false, Distance::Cosine)
    );
    assert_eq!(f.identity(), "", "today's content ids stay");
}

#[test]
fn pooling_normalize_and_limits_come_from_the_config() {
    let cls = pooling("cls_token");
    let d = folder(
        &["model.onnx"],
        &[
            ("modules.json", MODULES),
            ("1_Pooling/config.json", &cls),
            (
                "sentence_bert_config.json",
                r#"{"max_seq_length": 512, "do_lower_case": true}"#,
            ),
        ],
    );
    let f = read(&d).unwrap();
    assert_eq!(f.pooling, Pooling::Cls);
    assert!(f.normalize && f.described && f.lowercase);
    assert_eq!((f.max_seq_length, f.dimension), (Some(512), Some(384)));
    assert_eq!(f.identity(), "/pool-cls/lower");

    // Without the Normalize module the vectors are not unit length: part of the identity.
    let two: Vec<&str> = MODULES
        .lines()
        .filter(|l| !l.contains("Normalize"))
        .collect();
    let modules = two.join("\n").replace("Pooling\"},", "Pooling\"}");
    let mean = pooling("mean_tokens");
    let d = folder(
        &["model.onnx"],
        &[("modules.json", &modules), ("1_Pooling/config.json", &mean)],
    );
    let f = read(&d).unwrap();
    assert!(!f.normalize);
    assert_eq!(f.identity(), "/raw");
}

#[test]
fn what_cannot_be_honoured_is_refused_by_name() {
    let dense = MODULES.replace(
        r#"{"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}"#,
        r#"{"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}"#,
    );
    let mean = pooling("mean_tokens");
    let d = folder(
        &["model.onnx"],
        &[("modules.json", &dense), ("1_Pooling/config.json", &mean)],
    );
    let e = read(&d).unwrap_err().to_string();
    assert!(
        e.contains("sentence_transformers.models.Dense") && e.contains("2_Dense"),
        "{e}"
    );

    let both = r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#;
    let d = folder(
        &["model.onnx"],
        &[("modules.json", MODULES), ("1_Pooling/config.json", both)],
    );
    let e = read(&d).unwrap_err().to_string();
    assert!(
        e.contains("several pooling modes") && e.contains("cls, mean"),
        "{e}"
    );

    let d = folder(
        &["model.onnx"],
        &[
            ("modules.json", MODULES),
            ("1_Pooling/config.json", &mean),
            (
                "config_sentence_transformers.json",
                r#"{"similarity_fn_name": "jaccard"}"#,
            ),
        ],
    );
    let e = read(&d).unwrap_err().to_string();
    assert!(e.contains("jaccard"), "{e}");

    let d = folder(&["model.onnx"], &[("modules.json", "{not json")]);
    let e = read(&d).unwrap_err().to_string();
    assert!(e.contains("modules.json is not valid JSON"), "{e}");
}

#[test]
fn prompts_and_distance_as_models_name_them() {
    let mean = pooling("mean_tokens");
    let with = |config: &str| {
        let d = folder(
            &["model.onnx"],
            &[
                ("modules.json", MODULES),
                ("1_Pooling/config.json", &mean),
                ("config_sentence_transformers.json", config),
            ],
        );
        read(&d).unwrap()
    };
    // e5: query / passage.
    let f = with(
        r#"{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": null}"#,
    );
    assert_eq!(f.document_prompt.as_deref(), Some("passage: "));
    assert_eq!(f.query_prompt.as_deref(), Some("query: "));
    // nomic: search_query / search_document; dot product.
    let f = with(
        r#"{"prompts": {"search_query": "search_query: ", "search_document": "search_document: ", "clustering": "clustering: "}, "similarity_fn_name": "dot"}"#,
    );
    assert_eq!(f.document_prompt.as_deref(), Some("search_document: "));
    assert_eq!(f.query_prompt.as_deref(), Some("search_query: "));
    assert_eq!(f.distance, Distance::Dot);
    assert!(f.identity().starts_with("/prompt-"));
    // bge: a query prompt only; documents as they are.
    let f = with(
        r#"{"prompts": {"query": "Represent this sentence for searching relevant passages: ", "document": ""}}"#,
    );
    assert_eq!(f.document_prompt, None);
    assert!(f.query_prompt.as_deref().unwrap().starts_with("Represent"));
    assert_eq!(f.identity(), "");

    // Flags override both; an empty one means none.
    let d = folder(
        &["model.onnx"],
        &[
            ("modules.json", MODULES),
            ("1_Pooling/config.json", &mean),
            (
                "config_sentence_transformers.json",
                r#"{"prompts": {"query": "q: ", "passage": "p: "}}"#,
            ),
        ],
    );
    let o = Overrides {
        document_prompt: Some(String::new()),
        query_prompt: Some("question: ".into()),
        ..Overrides::default()
    };
    let f = ModelFolder::read(d.path(), &o).unwrap();
    assert_eq!(f.document_prompt, None);
    assert_eq!(f.query_prompt.as_deref(), Some("question: "));
}

#[test]
fn the_graph_is_found_under_onnx_and_picked_by_name() {
    let d = folder(&["onnx/model.onnx", "onnx/model_qint8_avx512.onnx"], &[]);
    assert_eq!(read(&d).unwrap().onnx, d.path().join("onnx/model.onnx"));
    let o = Overrides {
        onnx_file: Some("model_qint8_avx512.onnx".into()),
        ..Overrides::default()
    };
    let f = ModelFolder::read(d.path(), &o).unwrap();
    assert_eq!(f.onnx, d.path().join("onnx/model_qint8_avx512.onnx"));

    let d = folder(&["onnx/model_fp16.onnx", "onnx/model_quantized.onnx"], &[]);
    let e = read(&d).unwrap_err().to_string();
    assert!(
        e.contains("onnx/model_fp16.onnx, onnx/model_quantized.onnx") && e.contains("--onnx-file"),
        "{e}"
    );
    let d = folder(&["onnx/model_quantized.onnx"], &[]);
    assert_eq!(
        read(&d).unwrap().onnx,
        d.path().join("onnx/model_quantized.onnx")
    );
    let d = folder(&[], &[]);
    assert!(matches!(read(&d), Err(EmbedError::ModelMissing(_))));
}

#[test]
fn sentence_transformers_6_configs_are_read_too() {
    // One `pooling_mode` and `embedding_dimension`; no `max_seq_length`: the tokenizer's
    // limit, capped by the model's positions.
    let d = folder(
        &["model.onnx"],
        &[
            ("modules.json", MODULES),
            (
                "1_Pooling/config.json",
                r#"{"embedding_dimension": 384, "pooling_mode": "lasttoken"}"#,
            ),
            (
                "tokenizer_config.json",
                r#"{"model_max_length": 1000000000000000019884624838656}"#,
            ),
            ("config.json", r#"{"max_position_embeddings": 512}"#),
        ],
    );
    let f = read(&d).unwrap();
    assert_eq!(
        (f.pooling, f.dimension, f.max_seq_length),
        (Pooling::LastToken, Some(384), Some(512))
    );
    let d = folder(
        &["model.onnx"],
        &[
            ("modules.json", MODULES),
            (
                "1_Pooling/config.json",
                r#"{"pooling_mode": ["cls", "mean"]}"#,
            ),
        ],
    );
    assert!(
        read(&d)
            .unwrap_err()
            .to_string()
            .contains("several pooling modes")
    );
    // A bare folder keeps today's limit (its tokenizer config says 512, MiniLM wants 256).
    let d = folder(
        &["model.onnx"],
        &[("tokenizer_config.json", r#"{"model_max_length": 512}"#)],
    );
    assert_eq!(read(&d).unwrap().max_seq_length, None);
}

#[test]
fn an_explicit_empty_document_prompt_means_none() {
    let mean = pooling("mean_tokens");
    let d = folder(
        &["model.onnx"],
        &[
            ("modules.json", MODULES),
            ("1_Pooling/config.json", &mean),
            (
                "config_sentence_transformers.json",
                r#"{"prompts": {"query": "query: ", "document": "", "passage": "passage: "}}"#,
            ),
        ],
    );
    let f = read(&d).unwrap();
    assert_eq!(f.document_prompt, None);
    assert_eq!(f.query_prompt.as_deref(), Some("query: "));
}
