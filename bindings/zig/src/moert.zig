//! Zig wrapper of moert (abi/moert.h): a runtime for the Mixture-of-Experts layer of LLMs.
//!
//! Every call that can fail returns an error union over `Error`; the sentence that says
//! why (the bad argument and its value) is `lastError()` on the same thread, as the C
//! library keeps it.  Handles have `deinit`.  A `Runtime` may be shared by threads; a
//! `Scratch` is used by one thread at a time; `Experts` is immutable and shareable.  The
//! raw C declarations are `moert.c`.
const std = @import("std");
pub const c = @import("c");

pub const Error = error{
    InvalidArgument,
    NullPointer,
    StructSize,
    Unsupported,
    OutOfMemory,
    TooManyTokens,
    NanLogit,
    ShapeMismatch,
    WrongRuntime,
    NotRouted,
    BackendUnavailable,
    Driver,
    Compile,
    ExpertId,
    Internal,
    /// a status code newer than this wrapper
    Unknown,
};

/// The error of a moert_status (null for MOERT_OK).
pub fn errorOf(status: c.moert_status) ?Error {
    return switch (status) {
        c.MOERT_OK => null,
        c.MOERT_ERR_INVALID_ARGUMENT => error.InvalidArgument,
        c.MOERT_ERR_NULL_POINTER => error.NullPointer,
        c.MOERT_ERR_STRUCT_SIZE => error.StructSize,
        c.MOERT_ERR_UNSUPPORTED => error.Unsupported,
        c.MOERT_ERR_OUT_OF_MEMORY => error.OutOfMemory,
        c.MOERT_ERR_TOO_MANY_TOKENS => error.TooManyTokens,
        c.MOERT_ERR_NAN_LOGIT => error.NanLogit,
        c.MOERT_ERR_SHAPE_MISMATCH => error.ShapeMismatch,
        c.MOERT_ERR_WRONG_RUNTIME => error.WrongRuntime,
        c.MOERT_ERR_NOT_ROUTED => error.NotRouted,
        c.MOERT_ERR_BACKEND_UNAVAILABLE => error.BackendUnavailable,
        c.MOERT_ERR_DRIVER => error.Driver,
        c.MOERT_ERR_COMPILE => error.Compile,
        c.MOERT_ERR_EXPERT_ID => error.ExpertId,
        c.MOERT_ERR_INTERNAL => error.Internal,
        else => error.Unknown,
    };
}

threadlocal var wrapper_message: [256]u8 = undefined;
threadlocal var wrapper_len: usize = 0;
threadlocal var wrapper_failed_last = false;

fn check(status: c.moert_status) Error!void {
    if (errorOf(status)) |err| {
        wrapper_failed_last = false;
        return err;
    }
}

/// A failure found by the wrapper before any C call (a slice too short, a dtype that
/// does not match the layer): InvalidArgument with a sentence for lastError().
fn invalid(comptime fmt: []const u8, args: anytype) Error {
    const s = std.fmt.bufPrint(&wrapper_message, fmt, args) catch wrapper_message[0..];
    wrapper_len = s.len;
    wrapper_failed_last = true;
    return error.InvalidArgument;
}

/// Why the last call on this thread failed: the library's sentence, or the wrapper's when
/// the wrapper refused the call itself.  Valid until the next call.
pub fn lastError() []const u8 {
    if (wrapper_failed_last) return wrapper_message[0..wrapper_len];
    return std.mem.span(c.moert_last_error());
}

/// The library's name and description of a status code.
pub fn statusString(status: c.moert_status) []const u8 {
    return std.mem.span(c.moert_status_string(status));
}

pub fn version() u32 {
    return c.moert_version();
}

pub fn versionString() []const u8 {
    return std.mem.span(c.moert_version_string());
}

// ---- enumerations and element types ----

pub const Backend = enum(u32) { auto = c.MOERT_BACKEND_AUTO, cpu = c.MOERT_BACKEND_CPU, cuda = c.MOERT_BACKEND_CUDA };
pub const DType = enum(u32) { f32 = c.MOERT_DTYPE_F32, bf16 = c.MOERT_DTYPE_BF16, f16 = c.MOERT_DTYPE_F16 };
pub const RouterKind = enum(u32) { softmax_topk = c.MOERT_ROUTER_SOFTMAX_TOPK, sigmoid_group_topk = c.MOERT_ROUTER_SIGMOID_GROUP_TOPK };
pub const SharedGate = enum(u32) { none = c.MOERT_SHARED_GATE_NONE, sigmoid = c.MOERT_SHARED_GATE_SIGMOID };

/// A bfloat16 as its bits.
pub const Bf16 = extern struct {
    bits: u16,

    /// Rounds to nearest even.
    pub fn fromF32(f: f32) Bf16 {
        const b: u32 = @bitCast(f);
        if (std.math.isNan(f)) return .{ .bits = @truncate((b >> 16) | 0x40) };
        return .{ .bits = @truncate((b +% 0x7fff +% ((b >> 16) & 1)) >> 16) };
    }
    pub fn toF32(h: Bf16) f32 {
        return @bitCast(@as(u32, h.bits) << 16);
    }
};

/// The moert dtype of a host element type: f32, f16 or Bf16.
pub fn dtypeOf(comptime T: type) DType {
    return switch (T) {
        f32 => .f32,
        f16 => .f16,
        Bf16 => .bf16,
        else => @compileError("moert elements are f32, f16 or moert.Bf16, not " ++ @typeName(T)),
    };
}

fn raw(comptime T: type, s: []const T) ?*const anyopaque {
    return if (s.len == 0) null else @ptrCast(s.ptr);
}

fn needLen(what: []const u8, have: usize, want: usize) Error!void {
    if (have < want) return invalid("{s} has {d} elements; the layer needs {d}", .{ what, have, want });
}

// ---- runtime ----

pub const RuntimeOptions = struct {
    backend: Backend = .auto,
    device_ordinal: i32 = 0,
    /// CPU worker threads; 0 = one per online CPU
    num_threads: u32 = 0,
    /// JIT cache folder; null = default, "" disables the disk cache
    cache_dir: ?[:0]const u8 = null,
};

/// One per process and device; thread-safe.
pub const Runtime = struct {
    ptr: *c.moert_runtime,

    pub fn init(options: RuntimeOptions) Error!Runtime {
        var o: c.moert_runtime_options = undefined;
        try check(c.moert_runtime_options_init(&o));
        o.backend = @backingInt(options.backend);
        o.device_ordinal = options.device_ordinal;
        o.num_threads = options.num_threads;
        o.cache_dir = if (options.cache_dir) |d| d.ptr else null;
        var out: ?*c.moert_runtime = null;
        try check(c.moert_runtime_create(&o, &out));
        return .{ .ptr = out.? };
    }

    /// Every Scratch and Experts made from it must be deinit first.
    pub fn deinit(self: *Runtime) void {
        c.moert_runtime_destroy(self.ptr);
        self.* = undefined;
    }

    pub fn backend(self: Runtime) Backend {
        return @fromBackingInt(@intCast(c.moert_runtime_backend(self.ptr)));
    }

    pub fn backendNote(self: Runtime) []const u8 {
        return std.mem.span(c.moert_runtime_backend_note(self.ptr));
    }
};

// ---- layer shape ----

pub const LayerDesc = struct {
    num_experts: u32,
    top_k: u32,
    hidden: u32,
    intermediate: u32,
    shared_intermediate: u32 = 0,
    shared_gate: SharedGate = .none,
    act_dtype: DType = .bf16,
    weight_dtype: DType = .bf16,
    router: RouterKind = .softmax_topk,
    renormalize: bool = true,
    n_group: u32 = 0,
    topk_group: u32 = 0,
    routed_scaling_factor: f32 = 1,
    plan_block_rows: u32 = 0,

    pub fn toC(d: LayerDesc) c.moert_layer_desc {
        var r: c.moert_layer_desc = undefined;
        _ = c.moert_layer_desc_init(&r);
        r.num_experts = d.num_experts;
        r.top_k = d.top_k;
        r.hidden = d.hidden;
        r.intermediate = d.intermediate;
        r.shared_intermediate = d.shared_intermediate;
        r.shared_gate = @backingInt(d.shared_gate);
        r.act_dtype = @backingInt(d.act_dtype);
        r.weight_dtype = @backingInt(d.weight_dtype);
        r.router = @backingInt(d.router);
        r.renormalize = @intFromBool(d.renormalize);
        r.n_group = d.n_group;
        r.topk_group = d.topk_group;
        r.routed_scaling_factor = d.routed_scaling_factor;
        r.plan_block_rows = d.plan_block_rows;
        return r;
    }
};

// ---- experts ----

/// One layer's routed expert weights (host memory, borrowed: they must outlive the view
/// and stay unchanged).
pub fn Weights(comptime W: type) type {
    return union(enum) {
        /// gate [E,I,H], up [E,I,H], down [E,H,I]
        stacked: struct { gate: []const W, up: []const W, down: []const W },
        /// gate_up [E,2I,H] (gate rows then up rows), down [E,H,I]
        stacked_gate_up: struct { gate_up: []const W, down: []const W },
        /// one [I,H] / [I,H] / [H,I] matrix per expert
        per_expert: struct { gate: []const []const W, up: []const []const W, down: []const []const W },
    };
}

/// The shared expert of a layer with shared_intermediate Is > 0 (borrowed).
pub fn SharedExpert(comptime W: type) type {
    return struct {
        gate: []const W, // [Is, H]
        up: []const W, // [Is, H]
        down: []const W, // [H, Is]
        /// [H]; SharedGate.sigmoid only
        expert_gate: ?[]const W = null,
    };
}

/// The most experts a layer has (abi/moert.h: E is 1..512).
pub const max_experts = 512;

/// An immutable view of one layer's weights; may be shared by threads.
pub const Experts = struct {
    ptr: *c.moert_experts,

    pub fn init(comptime W: type, rt: *const Runtime, desc: LayerDesc, weights: Weights(W), shared: ?SharedExpert(W)) Error!Experts {
        if (dtypeOf(W) != desc.weight_dtype)
            return invalid("the weights are {s}; the layer desc says {s}", .{ @tagName(dtypeOf(W)), @tagName(desc.weight_dtype) });
        const e: usize = desc.num_experts;
        const h: usize = desc.hidden;
        const i: usize = desc.intermediate;
        // per-expert pointer tables; the library copies them in moert_experts_create
        var tables: [3][max_experts]?*const anyopaque = undefined;
        var w = std.mem.zeroes(c.moert_experts_desc);
        w.struct_size = @sizeOf(c.moert_experts_desc);
        w.memory = c.MOERT_MEMORY_HOST;
        switch (weights) {
            .stacked => |s| {
                try needLen("gate", s.gate.len, e * i * h);
                try needLen("up", s.up.len, e * i * h);
                try needLen("down", s.down.len, e * h * i);
                w.layout = c.MOERT_LAYOUT_STACKED;
                w.gate = raw(W, s.gate);
                w.up = raw(W, s.up);
                w.down = raw(W, s.down);
            },
            .stacked_gate_up => |s| {
                try needLen("gate_up", s.gate_up.len, e * 2 * i * h);
                try needLen("down", s.down.len, e * h * i);
                w.layout = c.MOERT_LAYOUT_STACKED_GATE_UP;
                w.gate_up = raw(W, s.gate_up);
                w.down = raw(W, s.down);
            },
            .per_expert => |s| {
                const lists = [3][]const []const W{ s.gate, s.up, s.down };
                const names = [3][]const u8{ "gate", "up", "down" };
                for (lists, names, &tables) |list, name, *table| {
                    if (list.len != e or e > max_experts)
                        return invalid("{s} has {d} matrices; the layer has {d} experts", .{ name, list.len, e });
                    for (list, 0..) |m, x| {
                        try needLen(name, m.len, i * h);
                        table[x] = raw(W, m);
                    }
                }
                w.layout = c.MOERT_LAYOUT_PER_EXPERT;
                w.gate_ptrs = &tables[0];
                w.up_ptrs = &tables[1];
                w.down_ptrs = &tables[2];
            },
        }
        if (shared) |sh| {
            const is: usize = desc.shared_intermediate;
            try needLen("shared gate", sh.gate.len, is * h);
            try needLen("shared up", sh.up.len, is * h);
            try needLen("shared down", sh.down.len, h * is);
            w.shared_gate = raw(W, sh.gate);
            w.shared_up = raw(W, sh.up);
            w.shared_down = raw(W, sh.down);
            if (sh.expert_gate) |g| {
                try needLen("shared expert gate", g.len, h);
                w.shared_expert_gate = raw(W, g);
            }
        }
        const d = desc.toC();
        var out: ?*c.moert_experts = null;
        try check(c.moert_experts_create(rt.ptr, &d, &w, &out));
        return .{ .ptr = out.? };
    }

    pub fn deinit(self: *Experts) void {
        c.moert_experts_destroy(self.ptr);
        self.* = undefined;
    }
};

// ---- scratch ----

/// The last routing, borrowed from the scratch until the next route.
pub const Routing = struct {
    num_tokens: u32,
    top_k: u32,
    expert_ids: []const i32,
    expert_weights: []const f32,
};

/// Every buffer route and forward need, for one layer shape; one thread at a time.
pub const Scratch = struct {
    ptr: *c.moert_scratch,
    desc: LayerDesc,
    /// tokens the library may read in the next forward (see noteRouting)
    routed: u32 = 0,

    pub fn init(rt: *const Runtime, desc: LayerDesc, max_tokens: u32) Error!Scratch {
        const d = desc.toC();
        var out: ?*c.moert_scratch = null;
        try check(c.moert_scratch_create(rt.ptr, &d, max_tokens, &out));
        return .{ .ptr = out.?, .desc = desc };
    }

    pub fn deinit(self: *Scratch) void {
        c.moert_scratch_destroy(self.ptr);
        self.* = undefined;
    }

    /// After success the library routed `tokens`; after a failure it holds the old
    /// routing, the new one or none, so the larger count bounds what forward may read.
    fn noteRouting(self: *Scratch, status: c.moert_status, tokens: u32) Error!void {
        if (status == c.MOERT_OK or tokens > self.routed) self.routed = tokens;
        try check(status);
    }

    fn routeArgs(self: *const Scratch, comptime L: type, logits: []const L, bias: ?[]const f32) Error!c.moert_route_args {
        const e: usize = self.desc.num_experts;
        if (e == 0 or logits.len % e != 0)
            return invalid("logits has {d} elements, not a whole number of rows of E = {d}", .{ logits.len, e });
        if (bias) |b| try needLen("correction_bias", b.len, e);
        var r = std.mem.zeroes(c.moert_route_args);
        r.struct_size = @sizeOf(c.moert_route_args);
        r.num_tokens = std.math.cast(u32, logits.len / e) orelse return invalid("too many tokens", .{});
        r.logits_dtype = @backingInt(dtypeOf(L));
        r.memory = c.MOERT_MEMORY_HOST;
        r.logits = raw(L, logits);
        r.correction_bias = if (bias) |b| b.ptr else null;
        r.mode = c.MOERT_ROUTING_AUTO;
        return r;
    }

    fn forwardArgs(self: *const Scratch, comptime A: type, experts: *const Experts, tokens: u32, x: []const A, y: []A, accumulate: bool) Error!c.moert_forward_args {
        if (dtypeOf(A) != self.desc.act_dtype)
            return invalid("x and y are {s}; the layer desc says {s}", .{ @tagName(dtypeOf(A)), @tagName(self.desc.act_dtype) });
        const n = @as(usize, tokens) * self.desc.hidden;
        try needLen("x", x.len, n);
        try needLen("y", y.len, n);
        var f = std.mem.zeroes(c.moert_forward_args);
        f.struct_size = @sizeOf(c.moert_forward_args);
        f.experts = experts.ptr;
        f.memory = c.MOERT_MEMORY_HOST;
        f.x = raw(A, x);
        f.y = if (y.len == 0) null else @ptrCast(y.ptr);
        f.accumulate = @intFromBool(accumulate);
        return f;
    }

    /// Routes logits.len / E tokens (logits [T, E]); bias [E] for the sigmoid router.
    pub fn route(self: *Scratch, comptime L: type, logits: []const L, bias: ?[]const f32) Error!void {
        const r = try self.routeArgs(L, logits, bias);
        try self.noteRouting(c.moert_route(self.ptr, &r, null), r.num_tokens);
    }

    /// The engine's own routing: ids and weights [T, k].
    pub fn setRouting(self: *Scratch, ids: []const i32, weights: []const f32) Error!void {
        const k: usize = self.desc.top_k;
        if (k == 0 or ids.len % k != 0 or weights.len != ids.len)
            return invalid("ids ({d}) and weights ({d}) must both hold T*k (k = {d}) elements", .{ ids.len, weights.len, k });
        const t: u32 = @intCast(ids.len / k);
        try self.noteRouting(c.moert_set_routing(self.ptr, t, ids.ptr, weights.ptr, null), t);
    }

    /// y (+)= MoE(x) for the tokens of the last route; x and y [T, H].
    pub fn forward(self: *Scratch, comptime A: type, experts: *const Experts, x: []const A, y: []A, accumulate: bool) Error!void {
        const f = try self.forwardArgs(A, experts, self.routed, x, y, accumulate);
        try check(c.moert_forward(self.ptr, &f, null));
    }

    /// route + forward in one call.
    pub fn moe(self: *Scratch, comptime L: type, comptime A: type, experts: *const Experts, logits: []const L, bias: ?[]const f32, x: []const A, y: []A, accumulate: bool) Error!void {
        const r = try self.routeArgs(L, logits, bias);
        const f = try self.forwardArgs(A, experts, r.num_tokens, x, y, accumulate);
        try self.noteRouting(c.moert_moe(self.ptr, &r, &f, null), r.num_tokens);
    }

    pub fn routing(self: *Scratch) Error!Routing {
        var v = std.mem.zeroes(c.moert_routing_view);
        v.struct_size = @sizeOf(c.moert_routing_view);
        try check(c.moert_scratch_routing(self.ptr, &v));
        const n = @as(usize, v.num_tokens) * v.top_k;
        return .{
            .num_tokens = v.num_tokens,
            .top_k = v.top_k,
            .expert_ids = if (n == 0) &.{} else v.expert_ids[0..n],
            .expert_weights = if (n == 0) &.{} else v.expert_weights[0..n],
        };
    }
};

test "statuses map to errors and back" {
    try std.testing.expectEqual(@as(?Error, null), errorOf(c.MOERT_OK));
    try std.testing.expectEqual(@as(?Error, error.NotRouted), errorOf(c.MOERT_ERR_NOT_ROUTED));
    try std.testing.expectEqual(@as(?Error, error.Unknown), errorOf(9999));
    try std.testing.expect(std.mem.startsWith(u8, statusString(c.MOERT_ERR_NAN_LOGIT), "MOERT_ERR_NAN_LOGIT"));
    try std.testing.expectEqual(@as(u32, c.MOERT_VERSION_NUMBER), version());
    try std.testing.expectEqual(@as(f32, 1.5), Bf16.fromF32(1.5).toF32());
    try std.testing.expect(c.moert_get_api(c.MOERT_VERSION_MAJOR) != null);
}
