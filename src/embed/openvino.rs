//! OpenVINO's runtime through its C API, loaded at run time (the PyPI `openvino` wheel's
//! `libopenvino_c.so`; `models/fetch.sh` unpacks it): the bf16 path on CPUs with matrix units.
//!
//! Only what the embedder needs: read an ONNX graph from memory, compile it for the CPU with an
//! inference precision, and run `[batch, tokens]` int64 inputs to a `[batch, tokens, dim]`
//! float output. Every call's status is checked; errors carry OpenVINO's own message.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::sync::{Arc, OnceLock};

type Status = c_int;

/// `ov_shape_t`: rank and a pointer to the dimensions (owned by OpenVINO after `ov_shape_create`).
#[repr(C)]
struct Shape {
    rank: i64,
    dims: *mut i64,
}

/// `ov_element_type_e` values (OpenVINO >= 2025.1 numbering).
const ELEMENT_F32: c_int = 4;
const ELEMENT_I64: c_int = 10;

struct Api {
    core: *mut c_void,
    core_read_model_from_memory_buffer: unsafe extern "C" fn(
        *const c_void,
        *const c_char,
        usize,
        *const c_void,
        *mut *mut c_void,
    ) -> Status,
    core_compile_model: unsafe extern "C" fn(
        *const c_void,
        *const c_void,
        *const c_char,
        usize,
        *mut *mut c_void,
        ...
    ) -> Status,
    model_free: unsafe extern "C" fn(*mut c_void),
    compiled_model_create_infer_request:
        unsafe extern "C" fn(*const c_void, *mut *mut c_void) -> Status,
    compiled_model_free: unsafe extern "C" fn(*mut c_void),
    compiled_model_get_property:
        unsafe extern "C" fn(*const c_void, *const c_char, *mut *mut c_char) -> Status,
    infer_request_free: unsafe extern "C" fn(*mut c_void),
    infer_request_set_tensor:
        unsafe extern "C" fn(*mut c_void, *const c_char, *const c_void) -> Status,
    infer_request_infer: unsafe extern "C" fn(*mut c_void) -> Status,
    infer_request_get_output_tensor_by_index:
        unsafe extern "C" fn(*const c_void, usize, *mut *mut c_void) -> Status,
    shape_create: unsafe extern "C" fn(i64, *const i64, *mut Shape) -> Status,
    shape_free: unsafe extern "C" fn(*mut Shape) -> Status,
    tensor_create_from_host_ptr:
        unsafe extern "C" fn(c_int, Shape, *mut c_void, *mut *mut c_void) -> Status,
    tensor_get_shape: unsafe extern "C" fn(*const c_void, *mut Shape) -> Status,
    tensor_get_element_type: unsafe extern "C" fn(*const c_void, *mut c_int) -> Status,
    tensor_data: unsafe extern "C" fn(*const c_void, *mut *mut c_void) -> Status,
    tensor_free: unsafe extern "C" fn(*mut c_void),
    free: unsafe extern "C" fn(*const c_char),
    get_last_err_msg: unsafe extern "C" fn() -> *const c_char,
    /// Keeps the library mapped for as long as the function pointers above live.
    _library: libloading::Library,
}

// The core and the function pointers are used behind OpenVINO's own locking: its C API is
// thread-safe for distinct infer requests on one compiled model.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

/// glibc's `RTLD_NODELETE`: a library opened with it is never unmapped, even when its last
/// handle is closed.
const RTLD_NODELETE: std::ffi::c_int = 0x1000;

/// OpenVINO unloads its CPU plugin, and with it TBB, while it tears down at process exit, when
/// TBB's worker threads may still run: they then jump into unmapped code. Seen as rare
/// segfaults of runs that had finished (exit by signal after a clean summary; `dmesg`: the
/// instruction pointer equal to the faulting address), on AMX hosts where `auto` runs bf16.
/// Opened here first with `RTLD_NODELETE` (and never closed), the plugin and TBB stay mapped
/// until the process ends; OpenVINO's own later loads share these copies.
fn pin_plugin_libraries(dir: &Path) {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    for name in [
        "libtbb.so.12",
        "libtbbmalloc.so.2",
        "libopenvino_intel_cpu_plugin.so",
    ] {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        // SAFETY: these are OpenVINO's own libraries, beside the C library the user chose;
        // OpenVINO loads them anyway (here only earlier, and never unloaded).
        match unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) } {
            Ok(lib) => std::mem::forget(lib),
            Err(e) => tracing::debug!("could not pin {}: {e}", path.display()),
        }
    }
}

impl Api {
    fn load(path: &Path) -> Result<Api, String> {
        if let Some(dir) = path.parent() {
            pin_plugin_libraries(dir);
        }
        // SAFETY: loading a shared library runs its initialisers; this is OpenVINO's C library,
        // chosen by the user or fetched by models/fetch.sh.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the symbol has the C API's documented signature, written out above.
                *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{}: {e}", $name))?
            };
        }
        let core_create: unsafe extern "C" fn(*mut *mut c_void) -> Status = sym!("ov_core_create");
        let mut api = Api {
            core: std::ptr::null_mut(),
            core_read_model_from_memory_buffer: sym!("ov_core_read_model_from_memory_buffer"),
            core_compile_model: sym!("ov_core_compile_model"),
            model_free: sym!("ov_model_free"),
            compiled_model_create_infer_request: sym!("ov_compiled_model_create_infer_request"),
            compiled_model_free: sym!("ov_compiled_model_free"),
            compiled_model_get_property: sym!("ov_compiled_model_get_property"),
            infer_request_free: sym!("ov_infer_request_free"),
            infer_request_set_tensor: sym!("ov_infer_request_set_tensor"),
            infer_request_infer: sym!("ov_infer_request_infer"),
            infer_request_get_output_tensor_by_index: sym!(
                "ov_infer_request_get_output_tensor_by_index"
            ),
            shape_create: sym!("ov_shape_create"),
            shape_free: sym!("ov_shape_free"),
            tensor_create_from_host_ptr: sym!("ov_tensor_create_from_host_ptr"),
            tensor_get_shape: sym!("ov_tensor_get_shape"),
            tensor_get_element_type: sym!("ov_tensor_get_element_type"),
            tensor_data: sym!("ov_tensor_data"),
            tensor_free: sym!("ov_tensor_free"),
            free: sym!("ov_free"),
            get_last_err_msg: sym!("ov_get_last_err_msg"),
            _library: library,
        };
        let mut core = std::ptr::null_mut();
        // SAFETY: out-pointer to a fresh core.
        api.check(
            unsafe { core_create(&mut core) },
            "creating the OpenVINO core",
        )?;
        api.core = core;
        Ok(api)
    }

    fn check(&self, status: Status, what: &str) -> Result<(), String> {
        if status == 0 {
            return Ok(());
        }
        // SAFETY: returns a pointer to a thread-local message, or null.
        let msg = unsafe { (self.get_last_err_msg)() };
        let msg = if msg.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated string owned by OpenVINO.
            unsafe { CStr::from_ptr(msg) }
                .to_string_lossy()
                .trim()
                .to_owned()
        };
        Err(format!(
            "{what}: status {status}{}{msg}",
            if msg.is_empty() { "" } else { ": " }
        ))
    }
}

/// The library, loaded once per process (a second path in one process is refused).
static API: OnceLock<Result<Arc<Api>, String>> = OnceLock::new();

fn api(path: &Path) -> Result<Arc<Api>, String> {
    API.get_or_init(|| Api::load(path).map(Arc::new)).clone()
}

/// A graph compiled for the CPU.
pub struct Compiled {
    api: Arc<Api>,
    compiled: *mut c_void,
}

// SAFETY: a compiled model may be shared between threads (OpenVINO's documented model).
unsafe impl Send for Compiled {}
unsafe impl Sync for Compiled {}

impl Drop for Compiled {
    fn drop(&mut self) {
        // SAFETY: created by ov_core_compile_model, freed once.
        unsafe { (self.api.compiled_model_free)(self.compiled) }
    }
}

/// Compile ONNX `model` bytes for the CPU: `precision` is OpenVINO's inference precision
/// (`bf16` or `f32`), `streams` parallel requests of `threads_per_stream` threads each.
pub fn compile(
    library: &Path,
    model: &[u8],
    precision: &str,
    streams: usize,
    threads_per_stream: usize,
) -> Result<Compiled, String> {
    let api = api(library)?;
    let mut m = std::ptr::null_mut();
    // SAFETY: the buffer outlives the call; no weights tensor for ONNX.
    api.check(
        unsafe {
            (api.core_read_model_from_memory_buffer)(
                api.core,
                model.as_ptr().cast(),
                model.len(),
                std::ptr::null(),
                &mut m,
            )
        },
        "reading the model",
    )?;
    let c = |s: &str| CString::new(s).expect("no NUL in property text");
    let hint = if streams > 1 { "THROUGHPUT" } else { "LATENCY" };
    let props = [
        (c("INFERENCE_PRECISION_HINT"), c(precision)),
        (c("PERFORMANCE_HINT"), c(hint)),
        (c("NUM_STREAMS"), c(&streams.to_string())),
        (
            c("INFERENCE_NUM_THREADS"),
            c(&(streams * threads_per_stream).to_string()),
        ),
    ];
    let cpu = c("CPU");
    let mut compiled = std::ptr::null_mut();
    // SAFETY: key/value C strings, property_args_size counts the strings (2 per property).
    let status = unsafe {
        (api.core_compile_model)(
            api.core,
            m,
            cpu.as_ptr(),
            props.len() * 2,
            &mut compiled,
            props[0].0.as_ptr(),
            props[0].1.as_ptr(),
            props[1].0.as_ptr(),
            props[1].1.as_ptr(),
            props[2].0.as_ptr(),
            props[2].1.as_ptr(),
            props[3].0.as_ptr(),
            props[3].1.as_ptr(),
        )
    };
    // SAFETY: the compiled model holds what it needs of the model.
    unsafe { (api.model_free)(m) };
    api.check(status, "compiling the model for the CPU")?;
    Ok(Compiled { api, compiled })
}

impl Compiled {
    /// A property of the compiled model, e.g. `INFERENCE_PRECISION_HINT`.
    pub fn property(&self, key: &str) -> Result<String, String> {
        let key = CString::new(key).map_err(|e| e.to_string())?;
        let mut value = std::ptr::null_mut();
        // SAFETY: out-pointer to a string OpenVINO allocates; freed with ov_free.
        self.api.check(
            unsafe {
                (self.api.compiled_model_get_property)(self.compiled, key.as_ptr(), &mut value)
            },
            "reading a compiled-model property",
        )?;
        // SAFETY: a NUL-terminated string from OpenVINO.
        let s = unsafe { CStr::from_ptr(value) }
            .to_string_lossy()
            .into_owned();
        unsafe { (self.api.free)(value) };
        Ok(s)
    }

    /// A new inference request (one per concurrent caller).
    pub fn request(self: &Arc<Self>) -> Result<Request, String> {
        let mut r = std::ptr::null_mut();
        // SAFETY: out-pointer to a fresh request.
        self.api.check(
            unsafe { (self.api.compiled_model_create_infer_request)(self.compiled, &mut r) },
            "creating an inference request",
        )?;
        Ok(Request {
            model: self.clone(),
            request: r,
        })
    }
}

/// One inference request; not shared between threads at the same time.
pub struct Request {
    model: Arc<Compiled>,
    request: *mut c_void,
}

// SAFETY: a request may move between threads; `&mut self` keeps it to one at a time.
unsafe impl Send for Request {}

impl Drop for Request {
    fn drop(&mut self) {
        // SAFETY: created by ov_compiled_model_create_infer_request, freed once.
        unsafe { (self.model.api.infer_request_free)(self.request) }
    }
}

/// A tensor handle, freed on drop.
struct Tensor<'a> {
    api: &'a Api,
    t: *mut c_void,
}

impl Drop for Tensor<'_> {
    fn drop(&mut self) {
        // SAFETY: created by OpenVINO, freed once.
        unsafe { (self.api.tensor_free)(self.t) }
    }
}

impl Request {
    /// Run `inputs` (name, row-major `[rows, cols]` int64 data) and hand the first output,
    /// `(dims, data)`, to `read`.
    pub fn run<R>(
        &mut self,
        inputs: &mut [(&str, &mut [i64])],
        rows: usize,
        cols: usize,
        read: impl FnOnce(&[usize], &[f32]) -> R,
    ) -> Result<R, String> {
        let api = &*self.model.api;
        let dims = [rows as i64, cols as i64];
        let mut held = Vec::with_capacity(inputs.len());
        for (name, data) in inputs.iter_mut() {
            assert_eq!(data.len(), rows * cols, "input {name} has the wrong size");
            let mut shape = Shape {
                rank: 0,
                dims: std::ptr::null_mut(),
            };
            // SAFETY: dims lives through the call; OpenVINO copies them into `shape`.
            api.check(
                unsafe { (api.shape_create)(2, dims.as_ptr(), &mut shape) },
                "shape",
            )?;
            let mut t = std::ptr::null_mut();
            // SAFETY: the tensor borrows `data`, which outlives the inference below; the
            // tensor is freed (drop of `held`) before this function returns.
            let status = unsafe {
                (api.tensor_create_from_host_ptr)(
                    ELEMENT_I64,
                    Shape {
                        rank: shape.rank,
                        dims: shape.dims,
                    },
                    data.as_mut_ptr().cast(),
                    &mut t,
                )
            };
            // SAFETY: the shape was created above and is no longer needed.
            unsafe { (api.shape_free)(&mut shape) };
            api.check(status, "input tensor")?;
            let tensor = Tensor { api, t };
            let mut kind = 0;
            // SAFETY: a live tensor.
            api.check(
                unsafe { (api.tensor_get_element_type)(tensor.t, &mut kind) },
                "tensor type",
            )?;
            if kind != ELEMENT_I64 {
                return Err(format!(
                    "this OpenVINO numbers its element types differently (int64 came back as {kind}); use OpenVINO 2025.1 or newer"
                ));
            }
            let cname = CString::new(*name).map_err(|e| e.to_string())?;
            // SAFETY: live request and tensor.
            api.check(
                unsafe { (api.infer_request_set_tensor)(self.request, cname.as_ptr(), tensor.t) },
                &format!("setting input {name}"),
            )?;
            held.push(tensor);
        }
        // SAFETY: every input is set and its memory alive.
        api.check(
            unsafe { (api.infer_request_infer)(self.request) },
            "inference",
        )?;
        let mut out = std::ptr::null_mut();
        // SAFETY: out-pointer; the tensor is freed by `Tensor`'s drop.
        api.check(
            unsafe { (api.infer_request_get_output_tensor_by_index)(self.request, 0, &mut out) },
            "reading the output",
        )?;
        let out = Tensor { api, t: out };
        let mut kind = 0;
        // SAFETY: a live tensor.
        api.check(
            unsafe { (api.tensor_get_element_type)(out.t, &mut kind) },
            "output type",
        )?;
        if kind != ELEMENT_F32 {
            return Err(format!(
                "the model's first output is not float32 (type {kind})"
            ));
        }
        let mut shape = Shape {
            rank: 0,
            dims: std::ptr::null_mut(),
        };
        // SAFETY: a live tensor; the shape is freed below.
        api.check(
            unsafe { (api.tensor_get_shape)(out.t, &mut shape) },
            "output shape",
        )?;
        // SAFETY: `rank` dims written by OpenVINO.
        let dims: Vec<usize> =
            unsafe { std::slice::from_raw_parts(shape.dims, shape.rank as usize) }
                .iter()
                .map(|&d| d as usize)
                .collect();
        unsafe { (api.shape_free)(&mut shape) };
        let mut data = std::ptr::null_mut();
        // SAFETY: a live tensor.
        api.check(
            unsafe { (api.tensor_data)(out.t, &mut data) },
            "output data",
        )?;
        let n: usize = dims.iter().product();
        // SAFETY: an f32 tensor of `n` elements, alive until `out` drops after `read`.
        let values = unsafe { std::slice::from_raw_parts(data.cast::<f32>(), n) };
        let r = read(&dims, values);
        drop(out);
        drop(held);
        Ok(r)
    }
}
