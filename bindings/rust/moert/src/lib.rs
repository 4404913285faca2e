//! Safe Rust API for moert, a runtime for the Mixture-of-Experts layer of LLMs.
//!
//! ```no_run
//! use moert::{Runtime, RuntimeOptions, Backend, LayerDesc, DType, Experts, Weights};
//! # fn main() -> Result<(), moert::Error> {
//! let rt = Runtime::new(&RuntimeOptions { backend: Backend::Cpu, ..Default::default() })?;
//! let desc = LayerDesc { num_experts: 8, top_k: 2, hidden: 64, intermediate: 32,
//!                        act_dtype: DType::F32, weight_dtype: DType::F32, ..Default::default() };
//! # let (gate, up, down) = (vec![0f32; 8*32*64], vec![0f32; 8*32*64], vec![0f32; 8*64*32]);
//! # let (logits, x) = (vec![0f32; 4*8], vec![0f32; 4*64]);
//! let experts = Experts::new(&rt, &desc, Weights::Stacked { gate: &gate, up: &up, down: &down }, None)?;
//! let mut scratch = rt.scratch(&desc, 16)?;
//! let mut y = vec![0f32; 4 * 64];
//! scratch.moe(&experts, &logits, None, &x, &mut y, false)?;   // y = MoE(x) for 4 tokens
//! # Ok(()) }
//! ```
//!
//! Ownership and threads follow abi/moert.h:
//! - [`Runtime`] is `Send + Sync` (one per process and device, shared by every thread).
//! - [`Scratch`] is `Send` but not `Sync` (one thread at a time); it borrows its runtime.
//! - [`Experts`] is `Send + Sync` (immutable); it borrows its runtime and the weight slices,
//!   so neither can be dropped or changed while the view exists.
//!
//! Every failure is an [`Error`] with the library's status code and its sentence from
//! `moert_last_error()`.  Handles are destroyed by `Drop`.
//!
//! Lifetimes, checked by the compiler:
//! ```compile_fail,E0597
//! # use moert::*;
//! let desc = LayerDesc::default();
//! let scratch = {
//!     let rt = Runtime::new(&RuntimeOptions::default()).unwrap();
//!     rt.scratch(&desc, 4).unwrap()     // error: `rt` does not live long enough
//! };
//! ```
//! ```compile_fail,E0505
//! # use moert::*;
//! let rt = Runtime::new(&RuntimeOptions::default()).unwrap();
//! let desc = LayerDesc::default();
//! let gate = vec![0f32; 16];
//! let experts = Experts::new(&rt, &desc, Weights::Stacked { gate: &gate, up: &gate, down: &gate }, None).unwrap();
//! drop(gate);                           // error: `gate` is borrowed by `experts`
//! drop(experts);
//! ```
//! ```compile_fail,E0277
//! fn shared<T: Sync>(_: &T) {}
//! # use moert::*;
//! let rt = Runtime::new(&RuntimeOptions::default()).unwrap();
//! let s = rt.scratch(&LayerDesc::default(), 4).unwrap();
//! shared(&s);                           // error: Scratch is not Sync
//! ```
use moert_sys as sys;
use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

pub use sys::moert_status as RawStatus;

// ---- errors ----

/// A failed call: the status code and the library's sentence about it.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    status: i32,
    message: String,
}

impl Error {
    /// The moert_status code (one of the `sys::MOERT_ERR_*` values; codes may be added).
    pub fn status(&self) -> i32 {
        self.status
    }
    /// The library's sentence from moert_last_error(), naming the argument or the cause.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The status name and description ("MOERT_ERR_NULL_POINTER: a required ...").
    pub fn status_name(&self) -> &'static str {
        status_string(self.status)
    }
    /// The error the library left on this thread for `status`.
    fn from_library(status: i32) -> Error {
        // SAFETY: moert_last_error never returns NULL; the string lives until the next
        // moert call on this thread, and it is copied here before any.
        let message = unsafe { CStr::from_ptr(sys::moert_last_error()) };
        Error { status, message: message.to_string_lossy().into_owned() }
    }
    /// An argument the wrapper rejects before calling the library.
    fn invalid(message: String) -> Error {
        Error { status: sys::MOERT_ERR_INVALID_ARGUMENT, message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status_name(), self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("status", &self.status)
            .field("name", &self.status_name())
            .field("message", &self.message)
            .finish()
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(status: i32) -> Result<()> {
    if status == sys::MOERT_OK {
        Ok(())
    } else {
        Err(Error::from_library(status))
    }
}

/// The name and description of a status code; never fails, also for unknown codes.
pub fn status_string(status: i32) -> &'static str {
    // SAFETY: a static string, never NULL.
    unsafe { CStr::from_ptr(sys::moert_status_string(status)) }.to_str().unwrap_or("?")
}

/// The loaded library's version as MAJOR*10000 + MINOR*100 + PATCH.
pub fn version() -> u32 {
    unsafe { sys::moert_version() }
}

/// The loaded library's version as "MAJOR.MINOR.PATCH".
pub fn version_string() -> &'static str {
    unsafe { CStr::from_ptr(sys::moert_version_string()) }.to_str().unwrap_or("?")
}

// ---- enumerations ----

macro_rules! c_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $value:path),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }
        impl $name {
            pub fn raw(self) -> u32 {
                match self { $($name::$variant => $value),* }
            }
            pub fn from_raw(v: u32) -> Option<Self> {
                $(if v == $value { return Some($name::$variant); })*
                None
            }
        }
    };
}

c_enum!(
    /// Element type of activations, logits and weights.
    DType { F32 = sys::MOERT_DTYPE_F32, Bf16 = sys::MOERT_DTYPE_BF16, F16 = sys::MOERT_DTYPE_F16 }
);
c_enum!(Backend {
    Auto = sys::MOERT_BACKEND_AUTO,
    Cpu = sys::MOERT_BACKEND_CPU,
    Cuda = sys::MOERT_BACKEND_CUDA
});
impl Default for Backend {
    fn default() -> Self {
        Backend::Auto
    }
}
c_enum!(RouterKind {
    SoftmaxTopK = sys::MOERT_ROUTER_SOFTMAX_TOPK,
    SigmoidGroupTopK = sys::MOERT_ROUTER_SIGMOID_GROUP_TOPK
});
c_enum!(SharedGate { None = sys::MOERT_SHARED_GATE_NONE, Sigmoid = sys::MOERT_SHARED_GATE_SIGMOID });
c_enum!(RoutingMode {
    Auto = sys::MOERT_ROUTING_AUTO,
    Host = sys::MOERT_ROUTING_HOST,
    Device = sys::MOERT_ROUTING_DEVICE
});

/// A bfloat16 value as its bits.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bf16(pub u16);
/// An IEEE half-precision value as its bits.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct F16(pub u16);

impl Bf16 {
    /// Rounds to nearest even.
    pub fn from_f32(f: f32) -> Bf16 {
        let b = f.to_bits();
        if f.is_nan() {
            return Bf16(((b >> 16) | 0x40) as u16);
        }
        Bf16(((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16)
    }
    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

/// Host element types the library reads and writes.
///
/// # Safety
/// `DTYPE` must be the moert dtype whose element has exactly this type's layout.
pub unsafe trait Element: Copy + Send + Sync + 'static {
    const DTYPE: DType;
}
unsafe impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
unsafe impl Element for Bf16 {
    const DTYPE: DType = DType::Bf16;
}
unsafe impl Element for F16 {
    const DTYPE: DType = DType::F16;
}

// ---- runtime ----

/// Options of [`Runtime::new`]; `Default` is backend AUTO, device 0, one thread per CPU,
/// the default JIT cache folder.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    pub backend: Backend,
    pub device_ordinal: i32,
    /// CPU worker threads; 0 = one per online CPU.
    pub num_threads: u32,
    /// JIT cache folder; None = the default, Some("") disables the disk cache.
    pub cache_dir: Option<String>,
}

/// One per process and device.  Thread-safe: share it by reference (or in an `Arc`).
pub struct Runtime {
    ptr: NonNull<sys::moert_runtime>,
}

// SAFETY: abi/moert.h: "a moert_runtime may be shared by any number of threads".
unsafe impl Send for Runtime {}
unsafe impl Sync for Runtime {}

impl Runtime {
    pub fn new(options: &RuntimeOptions) -> Result<Runtime> {
        let mut o = sys::moert_runtime_options::zeroed();
        check(unsafe { sys::moert_runtime_options_init(&mut o) })?;
        o.backend = options.backend.raw();
        o.device_ordinal = options.device_ordinal;
        o.num_threads = options.num_threads;
        let cache = match &options.cache_dir {
            Some(dir) => Some(CString::new(dir.as_str()).map_err(|_| {
                Error::invalid(format!("cache_dir {dir:?} holds a NUL byte"))
            })?),
            None => None,
        };
        o.cache_dir = cache.as_ref().map_or(ptr::null(), |c| c.as_ptr());
        let mut out = ptr::null_mut();
        check(unsafe { sys::moert_runtime_create(&o, &mut out) })?;
        Ok(Runtime { ptr: NonNull::new(out).expect("moert_runtime_create returned NULL") })
    }

    /// A runtime on the CPU backend with `num_threads` workers (0 = one per CPU).
    pub fn cpu(num_threads: u32) -> Result<Runtime> {
        Runtime::new(&RuntimeOptions {
            backend: Backend::Cpu,
            num_threads,
            ..Default::default()
        })
    }

    /// The backend in use (CPU or CUDA).
    pub fn backend(&self) -> Backend {
        Backend::from_raw(unsafe { sys::moert_runtime_backend(self.ptr.as_ptr()) })
            .unwrap_or(Backend::Auto)
    }

    /// How the backend was chosen ("CPU: libcuda.so.1 not found").
    pub fn backend_note(&self) -> &'static str {
        unsafe { CStr::from_ptr(sys::moert_runtime_backend_note(self.ptr.as_ptr())) }
            .to_str()
            .unwrap_or("?")
    }

    /// A scratch for layers of shape `desc` and up to `max_tokens` tokens per call.
    pub fn scratch(&self, desc: &LayerDesc, max_tokens: u32) -> Result<Scratch<'_>> {
        Scratch::new(self, desc, max_tokens)
    }

    pub fn as_raw(&self) -> *mut sys::moert_runtime {
        self.ptr.as_ptr()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Scratches and experts borrow the runtime, so none is left here.
        unsafe { sys::moert_runtime_destroy(self.ptr.as_ptr()) }
    }
}

// ---- layer shape ----

/// The shape and router of one MoE layer (moert_layer_desc).  `Default` is the C
/// defaults: softmax top-k, renormalised, bf16, scaling 1, and zero sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerDesc {
    pub num_experts: u32,
    pub top_k: u32,
    pub hidden: u32,
    pub intermediate: u32,
    pub shared_intermediate: u32,
    pub shared_gate: SharedGate,
    pub act_dtype: DType,
    pub weight_dtype: DType,
    pub router: RouterKind,
    pub renormalize: bool,
    pub n_group: u32,
    pub topk_group: u32,
    pub routed_scaling_factor: f32,
    pub plan_block_rows: u32,
}

impl Default for LayerDesc {
    fn default() -> Self {
        LayerDesc {
            num_experts: 0,
            top_k: 0,
            hidden: 0,
            intermediate: 0,
            shared_intermediate: 0,
            shared_gate: SharedGate::None,
            act_dtype: DType::Bf16,
            weight_dtype: DType::Bf16,
            router: RouterKind::SoftmaxTopK,
            renormalize: true,
            n_group: 0,
            topk_group: 0,
            routed_scaling_factor: 1.0,
            plan_block_rows: 0,
        }
    }
}

impl LayerDesc {
    pub fn to_raw(&self) -> sys::moert_layer_desc {
        let mut d = sys::moert_layer_desc::zeroed();
        d.num_experts = self.num_experts;
        d.top_k = self.top_k;
        d.hidden = self.hidden;
        d.intermediate = self.intermediate;
        d.shared_intermediate = self.shared_intermediate;
        d.shared_gate = self.shared_gate.raw();
        d.act_dtype = self.act_dtype.raw();
        d.weight_dtype = self.weight_dtype.raw();
        d.router = self.router.raw();
        d.renormalize = self.renormalize as u32;
        d.n_group = self.n_group;
        d.topk_group = self.topk_group;
        d.routed_scaling_factor = self.routed_scaling_factor;
        d.plan_block_rows = self.plan_block_rows;
        d
    }
}

fn need_len(what: &str, len: usize, want: usize) -> Result<()> {
    if len < want {
        return Err(Error::invalid(format!("{what} has {len} elements; the layer needs {want}")));
    }
    Ok(())
}

fn need_dtype(what: &str, have: DType, want: DType) -> Result<()> {
    if have != want {
        return Err(Error::invalid(format!("{what} is {have:?}; the layer desc says {want:?}")));
    }
    Ok(())
}

// ---- experts ----

/// One layer's routed expert weights, borrowed (host memory).
pub enum Weights<'w, W: Element> {
    /// gate [E, I, H], up [E, I, H], down [E, H, I]
    Stacked { gate: &'w [W], up: &'w [W], down: &'w [W] },
    /// gate_up [E, 2I, H] (gate rows then up rows), down [E, H, I]
    StackedGateUp { gate_up: &'w [W], down: &'w [W] },
    /// one [I, H] / [I, H] / [H, I] matrix per expert
    PerExpert { gate: Vec<&'w [W]>, up: Vec<&'w [W]>, down: Vec<&'w [W]> },
}

/// The shared expert of a layer with `shared_intermediate > 0`.
pub struct SharedExpert<'w, W: Element> {
    pub gate: &'w [W],  // [Is, H]
    pub up: &'w [W],    // [Is, H]
    pub down: &'w [W],  // [H, Is]
    /// [H]; SharedGate::Sigmoid only
    pub expert_gate: Option<&'w [W]>,
}

/// A view of one layer's expert weights.  Immutable and thread-safe; borrows the runtime
/// for `'rt` and the weights for `'w`.
pub struct Experts<'rt, 'w> {
    ptr: NonNull<sys::moert_experts>,
    _runtime: PhantomData<&'rt Runtime>,
    _weights: PhantomData<&'w [u8]>,
}

// SAFETY: abi/moert.h: "a moert_experts is immutable after creation and may be shared";
// the weights it reads are shared borrows of Element (Sync) data.
unsafe impl Send for Experts<'_, '_> {}
unsafe impl Sync for Experts<'_, '_> {}

impl<'rt, 'w> Experts<'rt, 'w> {
    pub fn new<W: Element>(
        runtime: &'rt Runtime,
        desc: &LayerDesc,
        weights: Weights<'w, W>,
        shared: Option<SharedExpert<'w, W>>,
    ) -> Result<Experts<'rt, 'w>> {
        need_dtype("the weights", W::DTYPE, desc.weight_dtype)?;
        let (e, h, i) = (desc.num_experts as usize, desc.hidden as usize, desc.intermediate as usize);
        let mut w = sys::moert_experts_desc::zeroed();
        w.memory = sys::MOERT_MEMORY_HOST;
        // Keeps the pointer tables alive until moert_experts_create has copied them.
        let tables: [Vec<*const c_void>; 3];
        match &weights {
            Weights::Stacked { gate, up, down } => {
                need_len("gate", gate.len(), e * i * h)?;
                need_len("up", up.len(), e * i * h)?;
                need_len("down", down.len(), e * h * i)?;
                w.layout = sys::MOERT_LAYOUT_STACKED;
                w.gate = gate.as_ptr().cast();
                w.up = up.as_ptr().cast();
                w.down = down.as_ptr().cast();
                tables = Default::default();
            }
            Weights::StackedGateUp { gate_up, down } => {
                need_len("gate_up", gate_up.len(), e * 2 * i * h)?;
                need_len("down", down.len(), e * h * i)?;
                w.layout = sys::MOERT_LAYOUT_STACKED_GATE_UP;
                w.gate_up = gate_up.as_ptr().cast();
                w.down = down.as_ptr().cast();
                tables = Default::default();
            }
            Weights::PerExpert { gate, up, down } => {
                let mut t: [Vec<*const c_void>; 3] = Default::default();
                for (k, (name, list, n)) in
                    [("gate", gate, i * h), ("up", up, i * h), ("down", down, h * i)].into_iter().enumerate()
                {
                    if list.len() != e {
                        return Err(Error::invalid(format!(
                            "{name} has {} matrices; the layer has {e} experts",
                            list.len()
                        )));
                    }
                    for (x, m) in list.iter().enumerate() {
                        need_len(&format!("{name}[{x}]"), m.len(), n)?;
                        t[k].push(m.as_ptr().cast());
                    }
                }
                tables = t;
                w.layout = sys::MOERT_LAYOUT_PER_EXPERT;
                w.gate_ptrs = tables[0].as_ptr();
                w.up_ptrs = tables[1].as_ptr();
                w.down_ptrs = tables[2].as_ptr();
            }
        }
        if let Some(s) = &shared {
            let is = desc.shared_intermediate as usize;
            need_len("shared gate", s.gate.len(), is * h)?;
            need_len("shared up", s.up.len(), is * h)?;
            need_len("shared down", s.down.len(), h * is)?;
            w.shared_gate = s.gate.as_ptr().cast();
            w.shared_up = s.up.as_ptr().cast();
            w.shared_down = s.down.as_ptr().cast();
            if let Some(g) = s.expert_gate {
                need_len("shared expert gate", g.len(), h)?;
                w.shared_expert_gate = g.as_ptr().cast();
            }
        }
        let raw_desc = desc.to_raw();
        let mut out = ptr::null_mut();
        check(unsafe { sys::moert_experts_create(runtime.as_raw(), &raw_desc, &w, &mut out) })?;
        drop(tables);
        Ok(Experts {
            ptr: NonNull::new(out).expect("moert_experts_create returned NULL"),
            _runtime: PhantomData,
            _weights: PhantomData,
        })
    }

    pub fn as_raw(&self) -> *const sys::moert_experts {
        self.ptr.as_ptr()
    }
}

impl Drop for Experts<'_, '_> {
    fn drop(&mut self) {
        unsafe { sys::moert_experts_destroy(self.ptr.as_ptr()) }
    }
}

// ---- scratch ----

/// Every buffer route and forward need, for one layer shape; reused for every layer of
/// that shape.  One thread at a time: `Send`, not `Sync`.
pub struct Scratch<'rt> {
    ptr: NonNull<sys::moert_scratch>,
    desc: LayerDesc,
    max_tokens: u32,
    routed_tokens: Option<u32>,
    _runtime: PhantomData<&'rt Runtime>,
}

// SAFETY: abi/moert.h: "a moert_scratch must be used by one thread at a time"; moving it
// to another thread is fine, sharing it is not (the raw pointer keeps it !Sync).
unsafe impl Send for Scratch<'_> {}

/// The last routing: ids and weights [T, k], row-major.
#[derive(Debug, Clone, Copy)]
pub struct Routing<'s> {
    pub num_tokens: u32,
    pub top_k: u32,
    pub expert_ids: &'s [i32],
    pub expert_weights: &'s [f32],
}

/// The bucket plan of the last routing (see moert_plan_view in abi/moert.h).
#[derive(Debug, Clone, Copy)]
pub struct Plan<'s> {
    pub num_tokens: u32,
    pub num_experts: u32,
    pub top_k: u32,
    pub offsets: &'s [i32],
    pub packed_token: &'s [i32],
    pub pair_of: &'s [i32],
    pub block_rows: u32,
    pub padded_offsets: &'s [i32],
    pub block_expert: &'s [i32],
}

unsafe fn slice<'a, T>(p: *const T, n: usize) -> &'a [T] {
    if n == 0 || p.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(p, n)
    }
}

impl<'rt> Scratch<'rt> {
    pub fn new(runtime: &'rt Runtime, desc: &LayerDesc, max_tokens: u32) -> Result<Scratch<'rt>> {
        let raw_desc = desc.to_raw();
        let mut out = ptr::null_mut();
        check(unsafe { sys::moert_scratch_create(runtime.as_raw(), &raw_desc, max_tokens, &mut out) })?;
        Ok(Scratch {
            ptr: NonNull::new(out).expect("moert_scratch_create returned NULL"),
            desc: *desc,
            max_tokens,
            routed_tokens: None,
            _runtime: PhantomData,
        })
    }

    /// Tracks how many tokens the library may read in the next forward, which sizes the
    /// check of x and y there.  On success that is `tokens`; after a failure the library
    /// holds either the old routing, the new one, or none, so the larger count is kept.
    fn note_routing(&mut self, status: i32, tokens: u32) -> Result<()> {
        if status == sys::MOERT_OK {
            self.routed_tokens = Some(tokens);
        } else {
            self.routed_tokens = Some(self.routed_tokens.unwrap_or(0).max(tokens));
        }
        check(status)
    }

    pub fn desc(&self) -> &LayerDesc {
        &self.desc
    }

    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Compiles every kernel ahead (a no-op on the CPU backend).
    pub fn prepare(&mut self) -> Result<()> {
        check(unsafe { sys::moert_scratch_prepare(self.ptr.as_ptr()) })
    }

    /// (host bytes, device bytes) the scratch holds.
    pub fn memory(&self) -> Result<(u64, u64)> {
        let (mut h, mut d) = (0u64, 0u64);
        check(unsafe { sys::moert_scratch_memory(self.ptr.as_ptr(), &mut h, &mut d) })?;
        Ok((h, d))
    }

    fn route_args<L: Element>(
        &self,
        logits: &[L],
        correction_bias: Option<&[f32]>,
    ) -> Result<sys::moert_route_args> {
        let e = self.desc.num_experts as usize;
        if e == 0 || logits.len() % e != 0 {
            return Err(Error::invalid(format!(
                "logits has {} elements, not a whole number of rows of E = {e}",
                logits.len()
            )));
        }
        let t = logits.len() / e;
        if let Some(b) = correction_bias {
            need_len("correction_bias", b.len(), e)?;
        }
        let mut r = sys::moert_route_args::zeroed();
        r.num_tokens = u32::try_from(t)
            .map_err(|_| Error::invalid(format!("{t} tokens is more than u32 holds")))?;
        r.logits_dtype = L::DTYPE.raw();
        r.memory = sys::MOERT_MEMORY_HOST;
        r.logits = logits.as_ptr().cast();
        r.correction_bias = correction_bias.map_or(ptr::null(), |b| b.as_ptr());
        r.mode = sys::MOERT_ROUTING_AUTO;
        Ok(r)
    }

    fn forward_args<A: Element>(
        &self,
        experts: &Experts<'_, '_>,
        tokens: u32,
        x: &[A],
        y: &mut [A],
        accumulate: bool,
    ) -> Result<sys::moert_forward_args> {
        need_dtype("x and y", A::DTYPE, self.desc.act_dtype)?;
        let n = tokens as usize * self.desc.hidden as usize;
        need_len("x", x.len(), n)?;
        need_len("y", y.len(), n)?;
        let mut f = sys::moert_forward_args::zeroed();
        f.experts = experts.as_raw();
        f.memory = sys::MOERT_MEMORY_HOST;
        f.x = x.as_ptr().cast();
        f.y = y.as_mut_ptr().cast();
        f.accumulate = accumulate as u32;
        Ok(f)
    }

    /// Routes `logits.len() / E` tokens (logits [T, E]); `correction_bias` [E] for the
    /// sigmoid router.  The result stays in the scratch for forward, [`Self::routing`] and
    /// [`Self::plan`].
    pub fn route<L: Element>(&mut self, logits: &[L], correction_bias: Option<&[f32]>) -> Result<()> {
        let r = self.route_args(logits, correction_bias)?;
        let st = unsafe { sys::moert_route(self.ptr.as_ptr(), &r, ptr::null_mut()) };
        self.note_routing(st, r.num_tokens)
    }

    /// Sets the routing of `ids.len() / k` tokens from the engine's own ids and weights
    /// ([T, k] each) and builds the plan.
    pub fn set_routing(&mut self, expert_ids: &[i32], expert_weights: &[f32]) -> Result<()> {
        let k = self.desc.top_k as usize;
        if k == 0 || expert_ids.len() % k != 0 || expert_weights.len() != expert_ids.len() {
            return Err(Error::invalid(format!(
                "expert_ids ({}) and expert_weights ({}) must both hold T * k (k = {k}) elements",
                expert_ids.len(),
                expert_weights.len()
            )));
        }
        let t = (expert_ids.len() / k) as u32;
        let st = unsafe {
            sys::moert_set_routing(
                self.ptr.as_ptr(),
                t,
                expert_ids.as_ptr(),
                expert_weights.as_ptr(),
                ptr::null_mut(),
            )
        };
        self.note_routing(st, t)
    }

    /// y (+)= MoE(x) for the tokens of the last route/set_routing; x and y [T, H].
    pub fn forward<A: Element>(
        &mut self,
        experts: &Experts<'_, '_>,
        x: &[A],
        y: &mut [A],
        accumulate: bool,
    ) -> Result<()> {
        // Before any routing, the library's own MOERT_ERR_NOT_ROUTED is the answer.
        let tokens = self.routed_tokens.unwrap_or(0);
        let f = self.forward_args(experts, tokens, x, y, accumulate)?;
        check(unsafe { sys::moert_forward(self.ptr.as_ptr(), &f, ptr::null_mut()) })
    }

    /// route + forward in one call.
    pub fn moe<L: Element, A: Element>(
        &mut self,
        experts: &Experts<'_, '_>,
        logits: &[L],
        correction_bias: Option<&[f32]>,
        x: &[A],
        y: &mut [A],
        accumulate: bool,
    ) -> Result<()> {
        let r = self.route_args(logits, correction_bias)?;
        let f = self.forward_args(experts, r.num_tokens, x, y, accumulate)?;
        let st = unsafe { sys::moert_moe(self.ptr.as_ptr(), &r, &f, ptr::null_mut()) };
        self.note_routing(st, r.num_tokens)
    }

    /// The last routing, borrowed from the scratch until the next call that changes it.
    pub fn routing(&mut self) -> Result<Routing<'_>> {
        let mut v = sys::moert_routing_view::zeroed();
        check(unsafe { sys::moert_scratch_routing(self.ptr.as_ptr(), &mut v) })?;
        let n = v.num_tokens as usize * v.top_k as usize;
        Ok(Routing {
            num_tokens: v.num_tokens,
            top_k: v.top_k,
            expert_ids: unsafe { slice(v.expert_ids, n) },
            expert_weights: unsafe { slice(v.expert_weights, n) },
        })
    }

    /// The bucket plan of the last routing.
    pub fn plan(&mut self) -> Result<Plan<'_>> {
        let mut v = sys::moert_plan_view::zeroed();
        check(unsafe { sys::moert_scratch_plan(self.ptr.as_ptr(), &mut v) })?;
        let pairs = v.num_tokens as usize * v.top_k as usize;
        let e1 = v.num_experts as usize + 1;
        Ok(Plan {
            num_tokens: v.num_tokens,
            num_experts: v.num_experts,
            top_k: v.top_k,
            offsets: unsafe { slice(v.offsets, e1) },
            packed_token: unsafe { slice(v.packed_token, pairs) },
            pair_of: unsafe { slice(v.pair_of, pairs) },
            block_rows: v.block_rows,
            padded_offsets: unsafe { slice(v.padded_offsets, e1) },
            block_expert: unsafe { slice(v.block_expert, v.num_blocks as usize) },
        })
    }

    pub fn as_raw(&mut self) -> *mut sys::moert_scratch {
        self.ptr.as_ptr()
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        unsafe { sys::moert_scratch_destroy(self.ptr.as_ptr()) }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

impl fmt::Debug for Experts<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Experts").field("ptr", &self.ptr).finish()
    }
}

impl fmt::Debug for Scratch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scratch")
            .field("desc", &self.desc)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}
