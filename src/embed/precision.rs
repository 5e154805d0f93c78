//! Which precision inference computes in, chosen from the CPU's features.
//!
//! - `fp32`: ONNX Runtime, fp32 compute (the int8-weight model's weights are widened to fp32).
//! - `bf16`: OpenVINO with bf16 inference precision: the matrix units (AMX) where the CPU has
//!   them. Fidelity measured against fp32 on the reference texts: cosine >= 0.9999.
//! - `auto` (default): bf16 on a CPU with AMX-BF16 when the OpenVINO library is at hand, else
//!   fp32; never a precision slower than fp32 on the same CPU.
//!
//! The content hash: an explicit `--precision` is part of the model identity (choosing another
//! one re-embeds, like a model change). `auto` is not: the precisions it picks agree within the
//! fidelity bound, so a scheduled run that lands on another kind of CPU re-embeds nothing.

use serde::{Deserialize, Serialize};

/// Requested precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Auto,
    Fp32,
    Bf16,
}

/// The precision and runtime a load settled on, and the CPU features behind the choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compute {
    /// `fp32` or `bf16`.
    pub precision: String,
    /// `onnxruntime` or `openvino`.
    pub runtime: String,
    /// The instruction set the precision runs on here: `amx-bf16`, `avx512-bf16`, `avx512f`,
    /// `avx2`, `cuda` or `baseline`.
    pub isa: String,
    /// Why this choice (for the log when `auto` chose).
    pub reason: String,
}

/// The CPU features that matter to the choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub amx_bf16: bool,
    pub avx512_bf16: bool,
    pub avx512f: bool,
    pub avx2: bool,
}

impl CpuFeatures {
    /// This machine's, from the kernel's view (`/proc/cpuinfo` flags, what `lscpu` shows; a
    /// feature the kernel has not enabled, such as AMX on an old kernel, is absent there).
    /// `M2Q_CPU_FLAGS` replaces the list (for tests of the choice, and to rule a feature out).
    pub fn detect() -> Self {
        if let Ok(flags) = std::env::var("M2Q_CPU_FLAGS") {
            return Self::from_flags(&flags);
        }
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let line = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
        Self::from_flags(line.split_once(':').map_or("", |(_, f)| f))
    }

    /// From a whitespace- or comma-separated flag list in `/proc/cpuinfo` spelling.
    pub fn from_flags(flags: &str) -> Self {
        let has = |f: &str| flags.split([' ', ',', '\t']).any(|x| x == f);
        Self {
            amx_bf16: has("amx_bf16") && has("amx_tile"),
            avx512_bf16: has("avx512_bf16"),
            avx512f: has("avx512f"),
            avx2: has("avx2"),
        }
    }

    /// Whether this CPU has instructions that compute bf16 (matrix units or AVX-512 BF16).
    pub fn computes_bf16(&self) -> bool {
        self.amx_bf16 || self.avx512_bf16
    }

    /// The best instruction set for `precision` here.
    pub fn isa(&self, bf16: bool) -> &'static str {
        match () {
            _ if bf16 && self.amx_bf16 => "amx-bf16",
            _ if bf16 && self.avx512_bf16 => "avx512-bf16",
            _ if self.avx512f => "avx512f",
            _ if self.avx2 => "avx2",
            _ => "baseline",
        }
    }
}

/// The CPU flags that matter to embedding speed, as `/proc/cpuinfo` (and `lscpu`) spell them.
pub fn relevant_flags() -> String {
    const FLAGS: &[&str] = &[
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    ];
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let line = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let have: Vec<&str> = line.split_whitespace().collect();
    let found: Vec<&str> = FLAGS.iter().copied().filter(|f| have.contains(f)).collect();
    if found.is_empty() {
        "no AVX2".into()
    } else {
        found.join(" ")
    }
}

/// What `auto` picks on a CPU with `features`, given whether OpenVINO is at hand: bf16 where
/// the CPU computes it natively (AMX-BF16, or AVX-512 BF16: 2.1x fp32 on a Zen 4, cosine min
/// 0.99996 against fp32), fp32 elsewhere.
pub fn auto_choice(features: CpuFeatures, openvino: bool) -> (Precision, String) {
    let unit = if features.amx_bf16 {
        "AMX-BF16"
    } else {
        "AVX-512 BF16"
    };
    match (features.computes_bf16(), openvino) {
        (true, true) => (Precision::Bf16, format!("the CPU has {unit}")),
        (true, false) => (
            Precision::Fp32,
            format!(
                "the CPU has {unit} but the OpenVINO library is missing (run `bash models/fetch.sh` or set M2Q_OPENVINO_LIB) for bf16"
            ),
        ),
        (false, _) => (Precision::Fp32, "the CPU computes no bf16".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_bf16_where_the_cpu_computes_it_and_openvino_is_there() {
        let xeon =
            CpuFeatures::from_flags("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8");
        let zen4 = CpuFeatures::from_flags("fpu avx2 avx512f avx512_bf16 avx512_vnni");
        assert!(xeon.amx_bf16 && !zen4.amx_bf16 && zen4.avx512_bf16);
        assert_eq!(auto_choice(xeon, true).0, Precision::Bf16);
        assert_eq!(auto_choice(xeon, false).0, Precision::Fp32);
        assert_eq!(auto_choice(zen4, true).0, Precision::Bf16);
        assert_eq!(auto_choice(zen4, false).0, Precision::Fp32);
        let zen3 = CpuFeatures::from_flags("fpu avx2 fma");
        assert_eq!(auto_choice(zen3, true).0, Precision::Fp32);
        assert_eq!(xeon.isa(true), "amx-bf16");
        assert_eq!(zen4.isa(true), "avx512-bf16");
        assert_eq!(zen4.isa(false), "avx512f");
        // amx_bf16 without the tile state enabled is no AMX.
        assert!(!CpuFeatures::from_flags("amx_bf16").amx_bf16);
        assert_eq!(CpuFeatures::from_flags("").isa(false), "baseline");
    }
}
