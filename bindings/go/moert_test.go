package moert

// Real route + forward on the CPU backend, checked against a float64 reference computed
// here (softmax top-k renormalised; SwiGLU experts) on random data with y poisoned first.
// The seed comes from $MOERT_TEST_SEED or the clock and is logged.

import (
	"errors"
	"math"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func newRand(t *testing.T) *rand.Rand {
	seed := time.Now().UnixNano()
	if s, err := strconv.ParseInt(os.Getenv("MOERT_TEST_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("MOERT_TEST_SEED=%d", seed)
	return rand.New(rand.NewSource(seed))
}

type layer struct {
	e, k, h, i, t     int
	logits            []float32
	x, gate, up, down []float64
}

func fill(r *rand.Rand, n int, s float64, round func(float32) float32) []float64 {
	v := make([]float64, n)
	for j := range v {
		v[j] = float64(round(float32((r.Float64()*2 - 1) * s)))
	}
	return v
}

func randomLayer(r *rand.Rand, e, k, h, i, t int, round func(float32) float32) *layer {
	l := &layer{e: e, k: k, h: h, i: i, t: t}
	l.x = fill(r, t*h, 1, round)
	l.gate = fill(r, e*i*h, 0.3, round)
	l.up = fill(r, e*i*h, 0.3, round)
	l.down = fill(r, e*h*i, 0.3, round)
	l.logits = make([]float32, t*e)
	for j := range l.logits {
		l.logits[j] = round(float32(r.Float64()*8 - 4))
	}
	return l
}

func (l *layer) route() ([]int32, []float64) {
	var ids []int32
	var ws []float64
	for t := 0; t < l.t; t++ {
		row := l.logits[t*l.e : (t+1)*l.e]
		order := make([]int, l.e)
		for j := range order {
			order[j] = j
		}
		sort.SliceStable(order, func(a, b int) bool { return row[order[a]] > row[order[b]] })
		m := float64(row[order[0]])
		sum := 0.0
		ex := make([]float64, l.k)
		for j := 0; j < l.k; j++ {
			ex[j] = math.Exp(float64(row[order[j]]) - m)
			sum += ex[j]
		}
		for j := 0; j < l.k; j++ {
			ids = append(ids, int32(order[j]))
			ws = append(ws, ex[j]/sum)
		}
	}
	return ids, ws
}

func (l *layer) forward(ids []int32, ws []float64) []float64 {
	y := make([]float64, l.t*l.h)
	for t := 0; t < l.t; t++ {
		x := l.x[t*l.h : (t+1)*l.h]
		for j := 0; j < l.k; j++ {
			e := int(ids[t*l.k+j])
			act := make([]float64, l.i)
			for r := 0; r < l.i; r++ {
				g, u := 0.0, 0.0
				for c := 0; c < l.h; c++ {
					g += l.gate[(e*l.i+r)*l.h+c] * x[c]
					u += l.up[(e*l.i+r)*l.h+c] * x[c]
				}
				act[r] = g / (1 + math.Exp(-g)) * u
			}
			for c := 0; c < l.h; c++ {
				d := 0.0
				for r := 0; r < l.i; r++ {
					d += l.down[(e*l.h+c)*l.i+r] * act[r]
				}
				y[t*l.h+c] += ws[t*l.k+j] * d
			}
		}
	}
	return y
}

func (l *layer) desc(dt DType) LayerDesc {
	d := DefaultLayerDesc()
	d.NumExperts, d.TopK, d.Hidden, d.Intermediate = l.e, l.k, l.h, l.i
	d.ActDType, d.WeightDType = dt, dt
	return d
}

func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for j, x := range v {
		out[j] = float32(x)
	}
	return out
}

func assertClose(t *testing.T, got, want []float64, abs, rel float64, what string) {
	t.Helper()
	max := 0.0
	for _, w := range want {
		max = math.Max(max, math.Abs(w))
	}
	if max < 1e-3 {
		t.Fatalf("%s: the reference is (near) zero: bad test data", what)
	}
	for j := range want {
		if math.IsNaN(got[j]) || math.Abs(got[j]-want[j]) > abs+rel*math.Abs(want[j]) {
			t.Fatalf("%s: y[%d] = %g, want %g", what, j, got[j], want[j])
		}
	}
}

func poisoned(n int) []float32 {
	y := make([]float32, n)
	for j := range y {
		y[j] = math.Float32frombits(0x7fa5a5a5)
	}
	return y
}

func TestF32RouteForwardMoE(t *testing.T) {
	l := randomLayer(newRand(t), 8, 2, 64, 32, 7, func(f float32) float32 { return f })
	ids, ws := l.route()
	want := l.forward(ids, ws)

	rt, err := NewRuntime(&RuntimeOptions{Backend: BackendCPU, NumThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if rt.Backend() != BackendCPU {
		t.Fatalf("backend %d", rt.Backend())
	}
	d := l.desc(F32DType)
	ex, err := NewExperts(rt, d, Weights[float32]{Gate: f32s(l.gate), Up: f32s(l.up), Down: f32s(l.down)})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	s, err := rt.NewScratch(d, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if err := Route(s, l.logits, nil); err != nil {
		t.Fatal(err)
	}
	r, err := s.Routing()
	if err != nil {
		t.Fatal(err)
	}
	for p := range ids {
		if r.ExpertIDs[p] != ids[p] || math.Abs(float64(r.ExpertWeights[p])-ws[p]) > 1e-6 {
			t.Fatalf("pair %d: (%d, %g), want (%d, %g)", p, r.ExpertIDs[p], r.ExpertWeights[p], ids[p], ws[p])
		}
	}
	p, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if p.Offsets[8] != 14 {
		t.Fatalf("offsets %v", p.Offsets)
	}
	for pair, row := range p.PairOf {
		if int(p.PackedToken[row]) != pair/2 {
			t.Fatalf("pair %d -> row %d holds token %d", pair, row, p.PackedToken[row])
		}
	}

	x := f32s(l.x)
	y := poisoned(7 * 64)
	if err := Forward(s, ex, x, y, false); err != nil {
		t.Fatal(err)
	}
	got := make([]float64, len(y))
	for j, v := range y {
		got[j] = float64(v)
	}
	assertClose(t, got, want, 1e-5, 1e-4, "forward")

	base := f32s(fill(newRand(t), 7*64, 2, func(f float32) float32 { return f }))
	y = append([]float32(nil), base...)
	if err := MoE(s, ex, l.logits, nil, x, y, true); err != nil {
		t.Fatal(err)
	}
	for j := range y {
		got[j] = float64(y[j]) - float64(base[j])
	}
	assertClose(t, got, want, 2e-5, 1e-4, "moe accumulate")
}

func TestBF16GateUp(t *testing.T) {
	round := func(f float32) float32 { return BF16FromFloat32(f).Float32() }
	l := randomLayer(newRand(t), 6, 3, 32, 16, 5, round)
	ids, ws := l.route()
	want := l.forward(ids, ws)
	bf := func(v []float64) []BF16 {
		out := make([]BF16, len(v))
		for j, x := range v {
			out[j] = BF16FromFloat32(float32(x))
		}
		return out
	}
	e, h, i := l.e, l.h, l.i
	var gateUp []BF16
	for x := 0; x < e; x++ {
		gateUp = append(gateUp, bf(l.gate[x*i*h:(x+1)*i*h])...)
		gateUp = append(gateUp, bf(l.up[x*i*h:(x+1)*i*h])...)
	}
	logits := make([]BF16, len(l.logits))
	for j, v := range l.logits {
		logits[j] = BF16FromFloat32(v)
	}
	rt, err := NewRuntime(&RuntimeOptions{Backend: BackendCPU, NumThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	d := l.desc(BF16DType)
	ex, err := NewExperts(rt, d, Weights[BF16]{GateUp: gateUp, Down: bf(l.down)})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	s, err := rt.NewScratch(d, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	y := make([]BF16, l.t*h)
	for j := range y {
		y[j] = 0x7fa5
	}
	if err := MoE(s, ex, logits, nil, bf(l.x), y, false); err != nil {
		t.Fatal(err)
	}
	got := make([]float64, len(y))
	for j, v := range y {
		got[j] = float64(v.Float32())
	}
	assertClose(t, got, want, 1e-3, 1e-2, "bf16 gate_up")
}

func TestErrors(t *testing.T) {
	rt, err := NewRuntime(&RuntimeOptions{Backend: BackendCPU, NumThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultLayerDesc()
	d.NumExperts, d.TopK, d.Hidden, d.Intermediate = 4, 2, 8, 4
	d.ActDType, d.WeightDType = F32DType, F32DType
	w := make([]float32, 4*4*8)
	ex, err := NewExperts(rt, d, Weights[float32]{Gate: w, Up: w, Down: w})
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewScratch(d, 2)
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]float32, 16), make([]float32, 16)

	err = Forward(s, ex, x, y, false)
	var me *Error
	if !errors.As(err, &me) || me.Status != StatusNotRouted || !errors.Is(err, ErrNotRouted) {
		t.Fatalf("forward before route: %v", err)
	}
	if !strings.Contains(me.Message, "moert_forward") || !strings.HasPrefix(err.Error(), "MOERT_ERR_NOT_ROUTED") {
		t.Fatalf("message %q / %q", me.Message, err.Error())
	}
	if err = Route(s, make([]float32, 3*4), nil); !errors.Is(err, ErrTooManyTokens) ||
		!strings.Contains(err.Error(), "max_tokens") {
		t.Fatalf("too many tokens: %v", err)
	}
	if err = Route(s, []float32{0, 1, float32(math.NaN()), 2}, nil); !errors.Is(err, ErrNaNLogit) {
		t.Fatalf("NaN logit: %v", err)
	}
	if err = s.SetRouting([]int32{0, 7}, []float32{0.5, 0.5}); !errors.Is(err, ErrExpertID) {
		t.Fatalf("bad expert id: %v", err)
	}
	if err = Route(s, make([]float32, 2*4), nil); err != nil {
		t.Fatal(err)
	}
	if err = Forward(s, ex, x[:8], y, false); !errors.Is(err, ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "x has 8 elements") {
		t.Fatalf("short x: %v", err)
	}
	bad := d
	bad.TopK = 9
	if _, err = rt.NewScratch(bad, 4); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "top_k") {
		t.Fatalf("top_k 9: %v", err)
	}
	if _, err = NewExperts(rt, d, Weights[BF16]{Gate: make([]BF16, 128)}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("dtype mismatch: %v", err)
	}
	// the runtime will not close under its children; closing is idempotent
	if err = rt.Close(); err == nil || !strings.Contains(err.Error(), "still open") {
		t.Fatalf("runtime closed with open children: %v", err)
	}
	for j := 0; j < 2; j++ {
		if err = s.Close(); err != nil {
			t.Fatal(err)
		}
		if err = ex.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err = Route(s, make([]float32, 4), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("route on a closed scratch: %v", err)
	}
	if err = rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err = rt.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestGoroutinesShareRuntimeAndExperts(t *testing.T) {
	l := randomLayer(newRand(t), 8, 2, 32, 16, 6, func(f float32) float32 { return f })
	ids, ws := l.route()
	want := l.forward(ids, ws)
	rt, err := NewRuntime(&RuntimeOptions{Backend: BackendCPU, NumThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	d := l.desc(F32DType)
	ex, err := NewExperts(rt, d, Weights[float32]{Gate: f32s(l.gate), Up: f32s(l.up), Down: f32s(l.down)})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	x := f32s(l.x)
	outs := make([][]float32, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for g := range outs {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s, err := rt.NewScratch(d, 8)
			if err != nil {
				errs[g] = err
				return
			}
			defer s.Close()
			outs[g] = poisoned(6 * 32)
			errs[g] = MoE(s, ex, l.logits, nil, x, outs[g], false)
		}(g)
	}
	wg.Wait()
	for g := range outs {
		if errs[g] != nil {
			t.Fatal(errs[g])
		}
		got := make([]float64, len(outs[g]))
		for j, v := range outs[g] {
			got[j] = float64(v)
			if math.Float32bits(v) != math.Float32bits(outs[0][j]) {
				t.Fatalf("goroutine %d differs from 0 at %d", g, j)
			}
		}
		assertClose(t, got, want, 1e-5, 1e-4, "goroutine")
	}
}

func TestVersion(t *testing.T) {
	if Version() != HeaderVersion || !strings.HasPrefix(VersionString(), "0.") {
		t.Fatalf("version %d %q", Version(), VersionString())
	}
}

func TestSharedExpertSigmoidGate(t *testing.T) {
	r := newRand(t)
	same := func(f float32) float32 { return f }
	l := randomLayer(r, 8, 2, 32, 16, 5, same)
	const is = 8
	sg, su := fill(r, is*32, 0.3, same), fill(r, is*32, 0.3, same)
	sd, seg := fill(r, 32*is, 0.3, same), fill(r, 32, 0.3, same)
	ids, ws := l.route()
	want := l.forward(ids, ws)
	// + sigmoid(x . seg) * down_s(silu(gate_s x) * up_s x)
	for tok := 0; tok < l.t; tok++ {
		x := l.x[tok*l.h : (tok+1)*l.h]
		z := 0.0
		for c := 0; c < l.h; c++ {
			z += seg[c] * x[c]
		}
		gw := 1 / (1 + math.Exp(-z))
		act := make([]float64, is)
		for row := 0; row < is; row++ {
			g, u := 0.0, 0.0
			for c := 0; c < l.h; c++ {
				g += sg[row*l.h+c] * x[c]
				u += su[row*l.h+c] * x[c]
			}
			act[row] = g / (1 + math.Exp(-g)) * u
		}
		for c := 0; c < l.h; c++ {
			d := 0.0
			for row := 0; row < is; row++ {
				d += sd[c*is+row] * act[row]
			}
			want[tok*l.h+c] += gw * d
		}
	}
	rt, err := NewRuntime(&RuntimeOptions{Backend: BackendCPU, NumThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	d := l.desc(F32DType)
	d.SharedIntermediate, d.SharedGate = is, SharedGateSigmoid
	ex, err := NewExperts(rt, d, Weights[float32]{Gate: f32s(l.gate), Up: f32s(l.up), Down: f32s(l.down),
		SharedGate: f32s(sg), SharedUp: f32s(su), SharedDown: f32s(sd), SharedExpertGate: f32s(seg)})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	s, err := rt.NewScratch(d, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	y := poisoned(l.t * l.h)
	if err := MoE(s, ex, l.logits, nil, f32s(l.x), y, false); err != nil {
		t.Fatal(err)
	}
	got := make([]float64, len(y))
	for j, v := range y {
		got[j] = float64(v)
	}
	assertClose(t, got, want, 1e-5, 1e-4, "shared expert")
}
