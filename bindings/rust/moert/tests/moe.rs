//! Real route + forward on the CPU backend, checked against a float64 reference computed
//! here (softmax top-k, renormalised; SwiGLU experts), on random data with y poisoned
//! first.  The seed comes from $MOERT_TEST_SEED or the clock and is printed.
use moert::*;
use std::time::{SystemTime, UNIX_EPOCH};

struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let base = std::env::var("MOERT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
        eprintln!("{test}: MOERT_TEST_SEED={base}");
        let mut h = base ^ 0x9E37_79B9_7F4A_7C15;
        for b in test.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01B3);
        }
        Rng(h | 1)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        lo + (hi - lo) * v as f64 / (1u64 << 53) as f64
    }
    fn fill(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi) as f32).collect()
    }
}

/// A layer's data as f64 (what the library actually sees after any rounding).
struct Layer {
    e: usize,
    k: usize,
    h: usize,
    i: usize,
    t: usize,
    logits: Vec<f32>,
    x: Vec<f64>,
    gate: Vec<f64>,
    up: Vec<f64>,
    down: Vec<f64>,
}

/// (ids, weights) of softmax top-k renormalised: top-k of the logits (ties to the lower
/// index), softmax over the k.
fn reference_route(l: &Layer) -> (Vec<i32>, Vec<f64>) {
    let (mut ids, mut ws) = (vec![], vec![]);
    for t in 0..l.t {
        let row = &l.logits[t * l.e..(t + 1) * l.e];
        let mut order: Vec<usize> = (0..l.e).collect();
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
        let top = &order[..l.k];
        let m = row[top[0]] as f64;
        let ex: Vec<f64> = top.iter().map(|&e| (row[e] as f64 - m).exp()).collect();
        let sum: f64 = ex.iter().sum();
        ids.extend(top.iter().map(|&e| e as i32));
        ws.extend(ex.iter().map(|v| v / sum));
    }
    (ids, ws)
}

fn reference_forward(l: &Layer, ids: &[i32], ws: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; l.t * l.h];
    for t in 0..l.t {
        let x = &l.x[t * l.h..(t + 1) * l.h];
        for j in 0..l.k {
            let e = ids[t * l.k + j] as usize;
            let act: Vec<f64> = (0..l.i)
                .map(|r| {
                    let off = (e * l.i + r) * l.h;
                    let g: f64 = (0..l.h).map(|c| l.gate[off + c] * x[c]).sum();
                    let u: f64 = (0..l.h).map(|c| l.up[off + c] * x[c]).sum();
                    g / (1.0 + (-g).exp()) * u
                })
                .collect();
            for c in 0..l.h {
                let off = (e * l.h + c) * l.i;
                let d: f64 = (0..l.i).map(|r| l.down[off + r] * act[r]).sum();
                y[t * l.h + c] += ws[t * l.k + j] * d;
            }
        }
    }
    y
}

fn random_layer(rng: &mut Rng, e: usize, k: usize, h: usize, i: usize, t: usize, round: fn(f32) -> f32) -> Layer {
    let mut vals = |n: usize, s: f64| -> Vec<f64> { rng.fill(n, -s, s).into_iter().map(|v| round(v) as f64).collect() };
    let x = vals(t * h, 1.0);
    let gate = vals(e * i * h, 0.3);
    let up = vals(e * i * h, 0.3);
    let down = vals(e * h * i, 0.3);
    let logits = rng.fill(t * e, -4.0, 4.0);
    Layer { e, k, h, i, t, logits, x, gate, up, down }
}

fn desc_of(l: &Layer, dtype: DType) -> LayerDesc {
    LayerDesc {
        num_experts: l.e as u32,
        top_k: l.k as u32,
        hidden: l.h as u32,
        intermediate: l.i as u32,
        act_dtype: dtype,
        weight_dtype: dtype,
        ..Default::default()
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn assert_close(got: &[f64], want: &[f64], abs: f64, rel: f64, what: &str) {
    let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(max > 1e-3, "{what}: the reference is (near) zero: bad test data");
    for (n, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: y[{n}] = {g} (not written?)");
        assert!((g - w).abs() <= abs + rel * w.abs(), "{what}: y[{n}] = {g}, want {w}");
    }
}

#[test]
fn f32_stacked_route_forward_and_moe() {
    let mut rng = Rng::new("f32_stacked_route_forward_and_moe");
    let l = random_layer(&mut rng, 8, 2, 64, 32, 7, |v| v);
    let (ids, ws) = reference_route(&l);
    let want = reference_forward(&l, &ids, &ws);

    let rt = Runtime::cpu(2).unwrap();
    assert_eq!(rt.backend(), Backend::Cpu);
    let desc = desc_of(&l, DType::F32);
    let (gate, up, down, x) = (f32s(&l.gate), f32s(&l.up), f32s(&l.down), f32s(&l.x));
    let experts = Experts::new(&rt, &desc, Weights::Stacked { gate: &gate, up: &up, down: &down }, None).unwrap();
    let mut s = rt.scratch(&desc, 16).unwrap();

    s.route(&l.logits, None).unwrap();
    let r = s.routing().unwrap();
    assert_eq!((r.num_tokens, r.top_k), (7, 2));
    assert_eq!(r.expert_ids, &ids[..]);
    for (n, (&g, &w)) in r.expert_weights.iter().zip(&ws).enumerate() {
        assert!((g as f64 - w).abs() < 1e-6, "weight {n}: {g} vs {w}");
    }
    let p = s.plan().unwrap();
    assert_eq!(p.offsets.len(), 9);
    assert_eq!(p.offsets[8], 14);
    for (pair, &row) in p.pair_of.iter().enumerate() {
        assert_eq!(p.packed_token[row as usize] as usize, pair / 2);
    }

    let mut y = vec![f32::from_bits(0x7fa5_a5a5); 7 * 64];
    s.forward(&experts, &x, &mut y, false).unwrap();
    let got: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    assert_close(&got, &want, 1e-5, 1e-4, "forward");

    // moe, accumulating into a random y
    let base = rng.fill(7 * 64, -2.0, 2.0);
    let mut y = base.clone();
    s.moe(&experts, &l.logits, None, &x, &mut y, true).unwrap();
    let got: Vec<f64> = y.iter().zip(&base).map(|(&v, &b)| v as f64 - b as f64).collect();
    assert_close(&got, &want, 2e-5, 1e-4, "moe accumulate");
}

#[test]
fn bf16_gate_up_and_per_expert_layouts() {
    let mut rng = Rng::new("bf16_gate_up_and_per_expert_layouts");
    let round = |v: f32| Bf16::from_f32(v).to_f32();
    let l = random_layer(&mut rng, 6, 3, 32, 16, 5, round);
    let bf = |v: &[f64]| -> Vec<Bf16> { v.iter().map(|&x| Bf16::from_f32(x as f32)).collect() };

    let rt = Runtime::cpu(1).unwrap();
    let desc = desc_of(&l, DType::Bf16);
    let (e, h, i) = (l.e, l.h, l.i);
    // gate_up [E, 2I, H]: each expert's gate rows then its up rows
    let mut gate_up = Vec::with_capacity(e * 2 * i * h);
    for x in 0..e {
        gate_up.extend(bf(&l.gate[x * i * h..(x + 1) * i * h]));
        gate_up.extend(bf(&l.up[x * i * h..(x + 1) * i * h]));
    }
    let down = bf(&l.down);
    let x = bf(&l.x);
    let logits: Vec<Bf16> = l.logits.iter().map(|&v| Bf16::from_f32(v)).collect();
    // the router sees bf16 logits: recompute the reference from them
    let l2 = Layer { logits: logits.iter().map(|b| b.to_f32()).collect(), ..l };
    let (ids2, ws2) = reference_route(&l2);
    let want2 = reference_forward(&l2, &ids2, &ws2);

    let fused = Experts::new(&rt, &desc, Weights::StackedGateUp { gate_up: &gate_up, down: &down }, None).unwrap();
    let (g, u) = (bf(&l2.gate), bf(&l2.up));
    let per = Experts::new(
        &rt,
        &desc,
        Weights::PerExpert {
            gate: g.chunks(i * h).collect(),
            up: u.chunks(i * h).collect(),
            down: down.chunks(h * i).collect(),
        },
        None,
    )
    .unwrap();
    let mut s = rt.scratch(&desc, 8).unwrap();
    for (name, ex) in [("gate_up", &fused), ("per_expert", &per)] {
        let mut y = vec![Bf16(0x7fa5); l2.t * h];
        s.moe(ex, &logits, None, &x, &mut y, false).unwrap();
        let got: Vec<f64> = y.iter().map(|v| v.to_f32() as f64).collect();
        // y is rounded to bf16 (8 bits of mantissa)
        assert_close(&got, &want2, 1e-3, 1e-2, name);
    }
}

#[test]
fn shared_expert_with_sigmoid_gate() {
    let mut rng = Rng::new("shared_expert_with_sigmoid_gate");
    let l = random_layer(&mut rng, 8, 2, 32, 16, 5, |v| v);
    let is = 8;
    let (sg, su, sd, seg) = (rng.fill(is * 32, -0.3, 0.3), rng.fill(is * 32, -0.3, 0.3),
                             rng.fill(32 * is, -0.3, 0.3), rng.fill(32, -0.3, 0.3));
    let (ids, ws) = reference_route(&l);
    let mut want = reference_forward(&l, &ids, &ws);
    // + sigmoid(x . seg) * down_s(silu(gate_s x) * up_s x)
    for t in 0..l.t {
        let x = &l.x[t * l.h..(t + 1) * l.h];
        let z: f64 = (0..l.h).map(|c| seg[c] as f64 * x[c]).sum();
        let gw = 1.0 / (1.0 + (-z).exp());
        let act: Vec<f64> = (0..is)
            .map(|r| {
                let g: f64 = (0..l.h).map(|c| sg[r * l.h + c] as f64 * x[c]).sum();
                let u: f64 = (0..l.h).map(|c| su[r * l.h + c] as f64 * x[c]).sum();
                g / (1.0 + (-g).exp()) * u
            })
            .collect();
        for c in 0..l.h {
            let d: f64 = (0..is).map(|r| sd[c * is + r] as f64 * act[r]).sum();
            want[t * l.h + c] += gw * d;
        }
    }
    let rt = Runtime::cpu(2).unwrap();
    let desc = LayerDesc {
        shared_intermediate: is as u32,
        shared_gate: SharedGate::Sigmoid,
        ..desc_of(&l, DType::F32)
    };
    let (gate, up, down, x) = (f32s(&l.gate), f32s(&l.up), f32s(&l.down), f32s(&l.x));
    let experts = Experts::new(
        &rt,
        &desc,
        Weights::Stacked { gate: &gate, up: &up, down: &down },
        Some(SharedExpert { gate: &sg, up: &su, down: &sd, expert_gate: Some(&seg) }),
    )
    .unwrap();
    let mut s = rt.scratch(&desc, 8).unwrap();
    let mut y = vec![f32::from_bits(0x7fa5_a5a5); l.t * l.h];
    s.moe(&experts, &l.logits, None, &x, &mut y, false).unwrap();
    let got: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    assert_close(&got, &want, 1e-5, 1e-4, "shared expert");
}

#[test]
fn errors_carry_status_and_message() {
    let rt = Runtime::cpu(1).unwrap();
    let desc = LayerDesc {
        num_experts: 4,
        top_k: 2,
        hidden: 8,
        intermediate: 4,
        act_dtype: DType::F32,
        weight_dtype: DType::F32,
        ..Default::default()
    };
    let w = vec![0.5f32; 4 * 4 * 8];
    let experts = Experts::new(&rt, &desc, Weights::Stacked { gate: &w, up: &w, down: &w }, None).unwrap();
    let mut s = rt.scratch(&desc, 2).unwrap();
    let (x, mut y) = (vec![1.0f32; 16], vec![0.0f32; 16]);

    let e = s.forward(&experts, &x, &mut y, false).unwrap_err();
    assert_eq!(e.status(), moert_sys::MOERT_ERR_NOT_ROUTED, "{e}");
    assert!(e.message().contains("moert_forward"), "{e:?}");
    assert!(e.to_string().starts_with("MOERT_ERR_NOT_ROUTED"), "{e}");

    let e = s.route(&[0.0f32; 3 * 4], None).unwrap_err();
    assert_eq!(e.status(), moert_sys::MOERT_ERR_TOO_MANY_TOKENS, "{e}");
    assert!(e.message().contains("max_tokens"), "{e:?}");

    let e = s.route(&[0.0, 1.0, f32::NAN, 2.0, 0.0, 0.0, 0.0, 0.0], None).unwrap_err();
    assert_eq!(e.status(), moert_sys::MOERT_ERR_NAN_LOGIT, "{e}");
    assert!(!e.message().is_empty());

    let e = s.set_routing(&[0, 7], &[0.5, 0.5]).unwrap_err();
    assert_eq!(e.status(), moert_sys::MOERT_ERR_EXPERT_ID, "{e}");

    // checked by the wrapper before the library could read out of bounds
    s.route(&[0.0f32; 2 * 4], None).unwrap();
    let e = s.forward(&experts, &x[..8], &mut y, false).unwrap_err();
    assert_eq!(e.status(), moert_sys::MOERT_ERR_INVALID_ARGUMENT);
    assert!(e.message().contains("x has 8 elements"), "{e:?}");
    let e = Experts::new(&rt, &desc, Weights::Stacked { gate: &w[..10], up: &w, down: &w }, None).unwrap_err();
    assert!(e.message().contains("gate"), "{e:?}");
    let bf = vec![Bf16(0); 4 * 4 * 8];
    let e = Experts::new(&rt, &desc, Weights::Stacked { gate: &bf, up: &bf, down: &bf }, None).unwrap_err();
    assert!(e.message().contains("Bf16"), "{e:?}");

    // from the library: a layer the runtime rejects
    let bad = LayerDesc { top_k: 9, ..desc };
    let e = rt.scratch(&bad, 4).unwrap_err();
    assert_eq!(e.status(), moert_sys::MOERT_ERR_INVALID_ARGUMENT, "{e}");
    assert!(e.message().contains("top_k"), "{e:?}");
}

fn assert_send<T: Send>() {}
fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn threads_share_runtime_and_experts() {
    assert_send_sync::<Runtime>();
    assert_send_sync::<Experts<'static, 'static>>();
    assert_send::<Scratch<'static>>();

    let mut rng = Rng::new("threads_share_runtime_and_experts");
    let l = random_layer(&mut rng, 8, 2, 32, 16, 6, |v| v);
    let (ids, ws) = reference_route(&l);
    let want = reference_forward(&l, &ids, &ws);
    let rt = Runtime::cpu(2).unwrap();
    let desc = desc_of(&l, DType::F32);
    let (gate, up, down, x) = (f32s(&l.gate), f32s(&l.up), f32s(&l.down), f32s(&l.x));
    let experts = Experts::new(&rt, &desc, Weights::Stacked { gate: &gate, up: &up, down: &down }, None).unwrap();
    let outputs: Vec<Vec<f32>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let mut s = rt.scratch(&desc, 8).unwrap(); // made here, used in the thread
                let (experts, x, logits) = (&experts, &x, &l.logits);
                sc.spawn(move || {
                    let mut y = vec![0f32; 6 * 32];
                    s.moe(experts, logits, None, x, &mut y, false).unwrap();
                    y
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for y in &outputs {
        assert_eq!(y, &outputs[0], "same bits from every thread");
        let got: Vec<f64> = y.iter().map(|&v| v as f64).collect();
        assert_close(&got, &want, 1e-5, 1e-4, "thread");
    }
}

#[test]
fn version_matches_the_crate() {
    assert_eq!(version(), moert_sys::MOERT_VERSION_NUMBER);
    assert_eq!(version_string(), "0.1.0");
    assert!(status_string(moert_sys::MOERT_OK).starts_with("MOERT_OK"));
}
