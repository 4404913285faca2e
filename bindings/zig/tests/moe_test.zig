//! Real route + forward on the CPU backend through the Zig wrapper, checked against a
//! float64 reference computed here (softmax top-k renormalised; SwiGLU experts) on random
//! data (seeded by the test runner's --seed), with y poisoned first.
const std = @import("std");
const moert = @import("moert");

const E = 8;
const K = 2;
const H = 32;
const I = 16;
const T = 6;

const Layer = struct {
    logits: [T * E]f32,
    x: [T * H]f64,
    gate: [E * I * H]f64,
    up: [E * I * H]f64,
    down: [E * H * I]f64,
    ids: [T * K]i32 = undefined,
    ws: [T * K]f64 = undefined,
    y: [T * H]f64 = undefined,
};

fn fill(r: std.Random, out: []f64, s: f64, comptime round: fn (f32) f32) void {
    for (out) |*v| v.* = round(@floatCast((r.float(f64) * 2 - 1) * s));
}

fn same(f: f32) f32 {
    return f;
}

fn toBf16(f: f32) f32 {
    return moert.Bf16.fromF32(f).toF32();
}

fn makeLayer(comptime round: fn (f32) f32) Layer {
    // A fresh seed every run (zig build passes --seed=...; a failing run prints its
    // command line with it, and `zig build test --seed 0x...` replays it).
    var prng = std.Random.DefaultPrng.init(std.testing.random_seed);
    const r = prng.random();
    var l: Layer = undefined;
    l.ids = undefined;
    fill(r, &l.x, 1, round);
    fill(r, &l.gate, 0.3, round);
    fill(r, &l.up, 0.3, round);
    fill(r, &l.down, 0.3, round);
    for (&l.logits) |*v| v.* = round(@floatCast(r.float(f64) * 8 - 4));
    reference(&l);
    return l;
}

/// top-k of the logits (ties to the lower index), softmax over the k; SwiGLU experts.
fn reference(l: *Layer) void {
    for (0..T) |t| {
        const row = l.logits[t * E .. (t + 1) * E];
        var taken: [E]bool = @splat(false);
        for (0..K) |j| {
            var best: usize = E;
            for (0..E) |e| {
                if (!taken[e] and (best == E or row[e] > row[best])) best = e;
            }
            taken[best] = true;
            l.ids[t * K + j] = @intCast(best);
        }
        var sum: f64 = 0;
        for (0..K) |j| {
            const v = @exp(@as(f64, row[@intCast(l.ids[t * K + j])]) - row[@intCast(l.ids[t * K])]);
            l.ws[t * K + j] = v;
            sum += v;
        }
        for (0..K) |j| l.ws[t * K + j] /= sum;
        for (0..H) |c| l.y[t * H + c] = 0;
        for (0..K) |j| {
            const e: usize = @intCast(l.ids[t * K + j]);
            var act: [I]f64 = undefined;
            for (0..I) |r| {
                var g: f64 = 0;
                var u: f64 = 0;
                for (0..H) |c| {
                    g += l.gate[(e * I + r) * H + c] * l.x[t * H + c];
                    u += l.up[(e * I + r) * H + c] * l.x[t * H + c];
                }
                act[r] = g / (1 + @exp(-g)) * u;
            }
            for (0..H) |c| {
                var d: f64 = 0;
                for (0..I) |r| d += l.down[(e * H + c) * I + r] * act[r];
                l.y[t * H + c] += l.ws[t * K + j] * d;
            }
        }
    }
}

fn toF32(comptime n: usize, v: *const [n]f64) [n]f32 {
    var out: [n]f32 = undefined;
    for (&out, v) |*o, x| o.* = @floatCast(x);
    return out;
}

fn expectClose(got: []const f64, want: []const f64, abs: f64, rel: f64) !void {
    var max: f64 = 0;
    for (want) |w| max = @max(max, @abs(w));
    try std.testing.expect(max > 1e-3); // real data, not zeros
    for (got, want, 0..) |g, w, n| {
        if (!(std.math.isFinite(g) and @abs(g - w) <= abs + rel * @abs(w))) {
            std.debug.print("y[{d}] = {d}, want {d}\n", .{ n, g, w });
            return error.TestExpectedApproxEq;
        }
    }
}

fn cpuDesc(dt: moert.DType) moert.LayerDesc {
    return .{ .num_experts = E, .top_k = K, .hidden = H, .intermediate = I, .act_dtype = dt, .weight_dtype = dt };
}

test "f32 route, forward and moe against a float64 reference" {
    const l = makeLayer(same);
    var rt = try moert.Runtime.init(.{ .backend = .cpu, .num_threads = 2 });
    defer rt.deinit();
    try std.testing.expectEqual(moert.Backend.cpu, rt.backend());
    const desc = cpuDesc(.f32);
    const gate = toF32(E * I * H, &l.gate);
    const up = toF32(E * I * H, &l.up);
    const down = toF32(E * H * I, &l.down);
    const x = toF32(T * H, &l.x);
    var experts = try moert.Experts.init(f32, &rt, desc, .{ .stacked = .{ .gate = &gate, .up = &up, .down = &down } }, null);
    defer experts.deinit();
    var s = try moert.Scratch.init(&rt, desc, 16);
    defer s.deinit();

    try s.route(f32, &l.logits, null);
    const r = try s.routing();
    try std.testing.expectEqual(@as(u32, T), r.num_tokens);
    try std.testing.expectEqualSlices(i32, &l.ids, r.expert_ids);
    for (r.expert_weights, l.ws) |g, w| try std.testing.expectApproxEqAbs(w, @as(f64, g), 1e-6);

    var y: [T * H]f32 = @splat(@bitCast(@as(u32, 0x7fa5a5a5)));
    try s.forward(f32, &experts, &x, &y, false);
    var got: [T * H]f64 = undefined;
    for (&got, y) |*g, v| g.* = v;
    try expectClose(&got, &l.y, 1e-5, 1e-4);

    // moe accumulating into y: y = y_before + moe(x)
    const before = y;
    try s.moe(f32, f32, &experts, &l.logits, null, &x, &y, true);
    for (&got, y, before) |*g, v, b| g.* = @as(f64, v) - b;
    try expectClose(&got, &l.y, 2e-5, 1e-4);
}

test "bf16 fused gate_up layout" {
    const l = makeLayer(toBf16);
    var gate_up: [E * 2 * I * H]moert.Bf16 = undefined;
    for (0..E) |e| {
        for (0..I * H) |n| {
            gate_up[e * 2 * I * H + n] = moert.Bf16.fromF32(@floatCast(l.gate[e * I * H + n]));
            gate_up[e * 2 * I * H + I * H + n] = moert.Bf16.fromF32(@floatCast(l.up[e * I * H + n]));
        }
    }
    var down: [E * H * I]moert.Bf16 = undefined;
    for (&down, l.down) |*d, v| d.* = moert.Bf16.fromF32(@floatCast(v));
    var x: [T * H]moert.Bf16 = undefined;
    for (&x, l.x) |*d, v| d.* = moert.Bf16.fromF32(@floatCast(v));
    var logits: [T * E]moert.Bf16 = undefined;
    for (&logits, l.logits) |*d, v| d.* = moert.Bf16.fromF32(v);

    var rt = try moert.Runtime.init(.{ .backend = .cpu, .num_threads = 1 });
    defer rt.deinit();
    const desc = cpuDesc(.bf16);
    var experts = try moert.Experts.init(moert.Bf16, &rt, desc, .{ .stacked_gate_up = .{ .gate_up = &gate_up, .down = &down } }, null);
    defer experts.deinit();
    var s = try moert.Scratch.init(&rt, desc, T);
    defer s.deinit();
    var y: [T * H]moert.Bf16 = @splat(.{ .bits = 0x7fa5 });
    try s.moe(moert.Bf16, moert.Bf16, &experts, &logits, null, &x, &y, false);
    var got: [T * H]f64 = undefined;
    for (&got, y) |*g, v| g.* = v.toF32();
    try expectClose(&got, &l.y, 1e-3, 1e-2);
}

test "errors are error unions with the library's sentence" {
    var rt = try moert.Runtime.init(.{ .backend = .cpu, .num_threads = 1 });
    defer rt.deinit();
    const desc: moert.LayerDesc = .{ .num_experts = 4, .top_k = 2, .hidden = 8, .intermediate = 4, .act_dtype = .f32, .weight_dtype = .f32 };
    const w: [4 * 4 * 8]f32 = @splat(0.25);
    var experts = try moert.Experts.init(f32, &rt, desc, .{ .stacked = .{ .gate = &w, .up = &w, .down = &w } }, null);
    defer experts.deinit();
    var s = try moert.Scratch.init(&rt, desc, 2);
    defer s.deinit();
    const x: [16]f32 = @splat(1);
    var y: [16]f32 = @splat(0);

    try std.testing.expectError(error.NotRouted, s.forward(f32, &experts, &x, &y, false));
    try std.testing.expect(std.mem.indexOf(u8, moert.lastError(), "moert_forward") != null);
    const twelve: [12]f32 = @splat(0);
    try std.testing.expectError(error.TooManyTokens, s.route(f32, &twelve, null));
    try std.testing.expect(std.mem.indexOf(u8, moert.lastError(), "max_tokens") != null);
    try std.testing.expectError(error.NanLogit, s.route(f32, &[_]f32{ 0, 1, std.math.nan(f32), 2 }, null));
    try std.testing.expectError(error.ExpertId, s.setRouting(&[_]i32{ 0, 7 }, &[_]f32{ 0.5, 0.5 }));
    const eight: [8]f32 = @splat(0);
    try s.route(f32, &eight, null);
    try std.testing.expectError(error.InvalidArgument, s.forward(f32, &experts, x[0..8], &y, false));
    try std.testing.expect(std.mem.indexOf(u8, moert.lastError(), "x has 8 elements") != null);
    var bad = desc;
    bad.top_k = 9;
    try std.testing.expectError(error.InvalidArgument, moert.Scratch.init(&rt, bad, 4));
    try std.testing.expect(std.mem.indexOf(u8, moert.lastError(), "top_k") != null);
}

test "per-expert tables and a sigmoid-gated shared expert" {
    const IS = 8;
    const l = makeLayer(same);
    var prng = std.Random.DefaultPrng.init(std.testing.random_seed +% 1);
    const r = prng.random();
    var sg: [IS * H]f32 = undefined;
    var su: [IS * H]f32 = undefined;
    var sd: [H * IS]f32 = undefined;
    var seg: [H]f32 = undefined;
    for ([_][]f32{ &sg, &su, &sd, &seg }) |buf| {
        for (buf) |*v| v.* = @floatCast((r.float(f64) * 2 - 1) * 0.3);
    }
    // want = routed experts + sigmoid(x . seg) * down_s(silu(gate_s x) * up_s x)
    var want = l.y;
    for (0..T) |t| {
        const x = l.x[t * H .. (t + 1) * H];
        var z: f64 = 0;
        for (0..H) |c| z += @as(f64, seg[c]) * x[c];
        const gw = 1 / (1 + @exp(-z));
        var act: [IS]f64 = undefined;
        for (0..IS) |row| {
            var g: f64 = 0;
            var u: f64 = 0;
            for (0..H) |c| {
                g += @as(f64, sg[row * H + c]) * x[c];
                u += @as(f64, su[row * H + c]) * x[c];
            }
            act[row] = g / (1 + @exp(-g)) * u;
        }
        for (0..H) |c| {
            var d: f64 = 0;
            for (0..IS) |row| d += @as(f64, sd[c * IS + row]) * act[row];
            want[t * H + c] += gw * d;
        }
    }

    const gate = toF32(E * I * H, &l.gate);
    const up = toF32(E * I * H, &l.up);
    const down = toF32(E * H * I, &l.down);
    var gates: [E][]const f32 = undefined;
    var ups: [E][]const f32 = undefined;
    var downs: [E][]const f32 = undefined;
    for (0..E) |e| {
        gates[e] = gate[e * I * H .. (e + 1) * I * H];
        ups[e] = up[e * I * H .. (e + 1) * I * H];
        downs[e] = down[e * H * I .. (e + 1) * H * I];
    }
    const x = toF32(T * H, &l.x);
    var rt = try moert.Runtime.init(.{ .backend = .cpu, .num_threads = 2 });
    defer rt.deinit();
    var desc = cpuDesc(.f32);
    desc.shared_intermediate = IS;
    desc.shared_gate = .sigmoid;
    var experts = try moert.Experts.init(f32, &rt, desc, .{ .per_expert = .{ .gate = &gates, .up = &ups, .down = &downs } }, .{ .gate = &sg, .up = &su, .down = &sd, .expert_gate = &seg });
    defer experts.deinit();
    var s = try moert.Scratch.init(&rt, desc, T);
    defer s.deinit();
    var y: [T * H]f32 = @splat(@bitCast(@as(u32, 0x7fa5a5a5)));
    try s.moe(f32, f32, &experts, &l.logits, null, &x, &y, false);
    var got: [T * H]f64 = undefined;
    for (&got, y) |*g, v| g.* = v;
    try expectClose(&got, &want, 1e-5, 1e-4);

    // a per-expert list of the wrong length is refused by the wrapper
    try std.testing.expectError(error.InvalidArgument, moert.Experts.init(f32, &rt, desc, .{ .per_expert = .{ .gate = gates[0..3], .up = &ups, .down = &downs } }, null));
    try std.testing.expect(std.mem.indexOf(u8, moert.lastError(), "gate has 3 matrices") != null);
}
