//! Raw declarations of the moert C ABI, one for one with `abi/moert.h` (read it for what
//! every function does, who owns what and what is thread-safe).  Everything here is
//! `unsafe` to call; the `moert` crate is the safe wrapper.
//!
//! `tests/abi_layout.rs` proves these declarations match the header: the size, alignment
//! and every field offset of every struct, and the value of every enumeration constant,
//! as the system C compiler sees them (see build.rs).
#![allow(non_camel_case_types)]
#![no_std]

use core::ffi::{c_char, c_void};
use core::marker::{PhantomData, PhantomPinned};

pub const MOERT_VERSION_MAJOR: u32 = 0;
pub const MOERT_VERSION_MINOR: u32 = 1;
pub const MOERT_VERSION_PATCH: u32 = 0;
pub const MOERT_VERSION_NUMBER: u32 =
    MOERT_VERSION_MAJOR * 10000 + MOERT_VERSION_MINOR * 100 + MOERT_VERSION_PATCH;

// ---- status codes ----
pub type moert_status = i32;
pub const MOERT_OK: moert_status = 0;
pub const MOERT_ERR_INVALID_ARGUMENT: moert_status = 1;
pub const MOERT_ERR_NULL_POINTER: moert_status = 2;
pub const MOERT_ERR_STRUCT_SIZE: moert_status = 3;
pub const MOERT_ERR_UNSUPPORTED: moert_status = 4;
pub const MOERT_ERR_OUT_OF_MEMORY: moert_status = 5;
pub const MOERT_ERR_TOO_MANY_TOKENS: moert_status = 6;
pub const MOERT_ERR_NAN_LOGIT: moert_status = 7;
pub const MOERT_ERR_SHAPE_MISMATCH: moert_status = 8;
pub const MOERT_ERR_WRONG_RUNTIME: moert_status = 9;
pub const MOERT_ERR_NOT_ROUTED: moert_status = 10;
pub const MOERT_ERR_BACKEND_UNAVAILABLE: moert_status = 11;
pub const MOERT_ERR_DRIVER: moert_status = 12;
pub const MOERT_ERR_COMPILE: moert_status = 13;
pub const MOERT_ERR_EXPERT_ID: moert_status = 14;
pub const MOERT_ERR_INTERNAL: moert_status = 15;
/// One past the last code this crate knows (the header's MOERT_STATUS_END_).
pub const MOERT_STATUS_END_: moert_status = 16;

// ---- enumerations ----
pub type moert_dtype = u32;
pub const MOERT_DTYPE_F32: moert_dtype = 1;
pub const MOERT_DTYPE_BF16: moert_dtype = 2;
pub const MOERT_DTYPE_F16: moert_dtype = 3;

pub type moert_backend = u32;
pub const MOERT_BACKEND_AUTO: moert_backend = 0;
pub const MOERT_BACKEND_CPU: moert_backend = 1;
pub const MOERT_BACKEND_CUDA: moert_backend = 2;

pub type moert_router_kind = u32;
pub const MOERT_ROUTER_SOFTMAX_TOPK: moert_router_kind = 1;
pub const MOERT_ROUTER_SIGMOID_GROUP_TOPK: moert_router_kind = 2;

pub type moert_shared_gate = u32;
pub const MOERT_SHARED_GATE_NONE: moert_shared_gate = 0;
pub const MOERT_SHARED_GATE_SIGMOID: moert_shared_gate = 1;

pub type moert_weight_layout = u32;
pub const MOERT_LAYOUT_STACKED: moert_weight_layout = 1;
pub const MOERT_LAYOUT_STACKED_GATE_UP: moert_weight_layout = 2;
pub const MOERT_LAYOUT_PER_EXPERT: moert_weight_layout = 3;

pub type moert_memory = u32;
pub const MOERT_MEMORY_HOST: moert_memory = 1;
pub const MOERT_MEMORY_DEVICE: moert_memory = 2;

pub type moert_routing_mode = u32;
pub const MOERT_ROUTING_AUTO: moert_routing_mode = 0;
pub const MOERT_ROUTING_HOST: moert_routing_mode = 1;
pub const MOERT_ROUTING_DEVICE: moert_routing_mode = 2;

// ---- opaque handles ----
macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _data: [u8; 0],
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}
opaque!(moert_runtime, moert_scratch, moert_experts);

// ---- structs ----
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct moert_runtime_options {
    pub struct_size: u32,
    pub backend: moert_backend,
    pub device_ordinal: i32,
    pub num_threads: u32,
    pub cu_context: *mut c_void,
    pub cache_dir: *const c_char,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct moert_layer_desc {
    pub struct_size: u32,
    pub num_experts: u32,
    pub top_k: u32,
    pub hidden: u32,
    pub intermediate: u32,
    pub shared_intermediate: u32,
    pub shared_gate: moert_shared_gate,
    pub act_dtype: moert_dtype,
    pub weight_dtype: moert_dtype,
    pub router: moert_router_kind,
    pub renormalize: u32,
    pub n_group: u32,
    pub topk_group: u32,
    pub routed_scaling_factor: f32,
    pub plan_block_rows: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct moert_experts_desc {
    pub struct_size: u32,
    pub layout: moert_weight_layout,
    pub memory: moert_memory,
    pub gate: *const c_void,
    pub up: *const c_void,
    pub gate_up: *const c_void,
    pub down: *const c_void,
    pub gate_ptrs: *const *const c_void,
    pub up_ptrs: *const *const c_void,
    pub down_ptrs: *const *const c_void,
    pub shared_gate: *const c_void,
    pub shared_up: *const c_void,
    pub shared_down: *const c_void,
    pub shared_expert_gate: *const c_void,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct moert_route_args {
    pub struct_size: u32,
    pub num_tokens: u32,
    pub logits_dtype: moert_dtype,
    pub memory: moert_memory,
    pub logits: *const c_void,
    pub logits_row_stride: u64,
    pub correction_bias: *const f32,
    pub mode: moert_routing_mode,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct moert_forward_args {
    pub struct_size: u32,
    pub experts: *const moert_experts,
    pub memory: moert_memory,
    pub x: *const c_void,
    pub x_row_stride: u64,
    pub y: *mut c_void,
    pub y_row_stride: u64,
    pub accumulate: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct moert_routing_view {
    pub struct_size: u32,
    pub num_tokens: u32,
    pub top_k: u32,
    pub expert_ids: *const i32,
    pub expert_weights: *const f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct moert_plan_view {
    pub struct_size: u32,
    pub num_tokens: u32,
    pub num_experts: u32,
    pub top_k: u32,
    pub offsets: *const i32,
    pub packed_token: *const i32,
    pub pair_of: *const i32,
    pub block_rows: u32,
    pub num_blocks: u32,
    pub padded_offsets: *const i32,
    pub block_expert: *const i32,
}

/// Implements `zeroed()` for the plain-data structs above: every field zero or NULL, with
/// `struct_size` set, the state the C side expects before the caller fills fields in.
macro_rules! zeroed_with_size {
    ($($name:ident),*) => {$(
        impl $name {
            pub fn zeroed() -> Self {
                // SAFETY: every field is an integer, a float or a raw pointer; all-zero is
                // a valid value of each.
                let mut s: Self = unsafe { core::mem::zeroed() };
                s.struct_size = core::mem::size_of::<Self>() as u32;
                s
            }
        }
    )*};
}
zeroed_with_size!(
    moert_runtime_options,
    moert_layer_desc,
    moert_experts_desc,
    moert_route_args,
    moert_forward_args,
    moert_routing_view,
    moert_plan_view
);

/// The function table of `moert_get_api`: the functions below in header order, without
/// the `moert_` prefix.  Members are appended in later minor versions; check
/// `struct_size` before using one that is newer than the library you load.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct moert_api {
    pub struct_size: u32,
    pub abi_major: u32,
    pub version: Option<unsafe extern "C" fn() -> u32>,
    pub version_string: Option<unsafe extern "C" fn() -> *const c_char>,
    pub status_string: Option<unsafe extern "C" fn(moert_status) -> *const c_char>,
    pub last_error: Option<unsafe extern "C" fn() -> *const c_char>,
    pub runtime_options_init: Option<unsafe extern "C" fn(*mut moert_runtime_options) -> moert_status>,
    pub runtime_create: Option<
        unsafe extern "C" fn(*const moert_runtime_options, *mut *mut moert_runtime) -> moert_status,
    >,
    pub runtime_destroy: Option<unsafe extern "C" fn(*mut moert_runtime)>,
    pub runtime_backend: Option<unsafe extern "C" fn(*const moert_runtime) -> moert_backend>,
    pub runtime_backend_note: Option<unsafe extern "C" fn(*const moert_runtime) -> *const c_char>,
    pub layer_desc_init: Option<unsafe extern "C" fn(*mut moert_layer_desc) -> moert_status>,
    pub scratch_create: Option<
        unsafe extern "C" fn(
            *mut moert_runtime,
            *const moert_layer_desc,
            u32,
            *mut *mut moert_scratch,
        ) -> moert_status,
    >,
    pub scratch_destroy: Option<unsafe extern "C" fn(*mut moert_scratch)>,
    pub scratch_prepare: Option<unsafe extern "C" fn(*mut moert_scratch) -> moert_status>,
    pub scratch_memory:
        Option<unsafe extern "C" fn(*const moert_scratch, *mut u64, *mut u64) -> moert_status>,
    pub experts_create: Option<
        unsafe extern "C" fn(
            *mut moert_runtime,
            *const moert_layer_desc,
            *const moert_experts_desc,
            *mut *mut moert_experts,
        ) -> moert_status,
    >,
    pub experts_destroy: Option<unsafe extern "C" fn(*mut moert_experts)>,
    pub route: Option<
        unsafe extern "C" fn(*mut moert_scratch, *const moert_route_args, *mut c_void) -> moert_status,
    >,
    pub set_routing: Option<
        unsafe extern "C" fn(*mut moert_scratch, u32, *const i32, *const f32, *mut c_void) -> moert_status,
    >,
    pub forward: Option<
        unsafe extern "C" fn(*mut moert_scratch, *const moert_forward_args, *mut c_void) -> moert_status,
    >,
    pub moe: Option<
        unsafe extern "C" fn(
            *mut moert_scratch,
            *const moert_route_args,
            *const moert_forward_args,
            *mut c_void,
        ) -> moert_status,
    >,
    pub scratch_routing:
        Option<unsafe extern "C" fn(*mut moert_scratch, *mut moert_routing_view) -> moert_status>,
    pub scratch_plan:
        Option<unsafe extern "C" fn(*mut moert_scratch, *mut moert_plan_view) -> moert_status>,
}

extern "C" {
    pub fn moert_version() -> u32;
    pub fn moert_version_string() -> *const c_char;
    pub fn moert_status_string(status: moert_status) -> *const c_char;
    pub fn moert_last_error() -> *const c_char;

    pub fn moert_runtime_options_init(options: *mut moert_runtime_options) -> moert_status;
    pub fn moert_runtime_create(
        options: *const moert_runtime_options,
        out: *mut *mut moert_runtime,
    ) -> moert_status;
    pub fn moert_runtime_destroy(runtime: *mut moert_runtime);
    pub fn moert_runtime_backend(runtime: *const moert_runtime) -> moert_backend;
    pub fn moert_runtime_backend_note(runtime: *const moert_runtime) -> *const c_char;

    pub fn moert_layer_desc_init(desc: *mut moert_layer_desc) -> moert_status;

    pub fn moert_scratch_create(
        runtime: *mut moert_runtime,
        desc: *const moert_layer_desc,
        max_tokens: u32,
        out: *mut *mut moert_scratch,
    ) -> moert_status;
    pub fn moert_scratch_destroy(scratch: *mut moert_scratch);
    pub fn moert_scratch_prepare(scratch: *mut moert_scratch) -> moert_status;
    pub fn moert_scratch_memory(
        scratch: *const moert_scratch,
        host_bytes: *mut u64,
        device_bytes: *mut u64,
    ) -> moert_status;

    pub fn moert_experts_create(
        runtime: *mut moert_runtime,
        desc: *const moert_layer_desc,
        weights: *const moert_experts_desc,
        out: *mut *mut moert_experts,
    ) -> moert_status;
    pub fn moert_experts_destroy(experts: *mut moert_experts);

    pub fn moert_route(
        scratch: *mut moert_scratch,
        args: *const moert_route_args,
        stream: *mut c_void,
    ) -> moert_status;
    pub fn moert_set_routing(
        scratch: *mut moert_scratch,
        num_tokens: u32,
        expert_ids: *const i32,
        expert_weights: *const f32,
        stream: *mut c_void,
    ) -> moert_status;
    pub fn moert_forward(
        scratch: *mut moert_scratch,
        args: *const moert_forward_args,
        stream: *mut c_void,
    ) -> moert_status;
    pub fn moert_moe(
        scratch: *mut moert_scratch,
        route: *const moert_route_args,
        forward: *const moert_forward_args,
        stream: *mut c_void,
    ) -> moert_status;

    pub fn moert_scratch_routing(scratch: *mut moert_scratch, out: *mut moert_routing_view)
        -> moert_status;
    pub fn moert_scratch_plan(scratch: *mut moert_scratch, out: *mut moert_plan_view) -> moert_status;

    pub fn moert_get_api(abi_major: u32) -> *const moert_api;
}
