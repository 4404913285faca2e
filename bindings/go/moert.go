// Package moert is the Go binding of moert, a runtime for the Mixture-of-Experts layer of
// large language models (abi/moert.h is the contract; read it for the details of every
// call).
//
// A Runtime is made once per process and device and may be shared by goroutines; a
// Scratch holds every buffer route and forward need and must be used by one goroutine at
// a time; Experts is an immutable view of one layer's weights and may be shared.  Each
// has a Close method that frees it now (a finalizer frees it too, as a safety net only).
// A Runtime refuses to Close while a Scratch or Experts made from it is open.
//
// Every failure is an *Error carrying the library's Status and its sentence from
// moert_last_error(); errors.Is(err, moert.ErrNotRouted) and friends match on Status.
//
// Building: cgo finds moert.h in ../../abi and libmoert.so in ../../build-test (the build
// dir of tools/test.sh), with an rpath to it.  For a library elsewhere set
// CGO_CFLAGS=-I<include dir> and CGO_LDFLAGS="-L<lib dir> -Wl,-rpath,<lib dir>".
//
// Weights are borrowed, not copied: Experts keeps the slices reachable until Close, and
// Go's collector does not move heap memory, so the library's pointers stay valid.
// (Go 1.19 has no runtime.Pinner; strictly, cgo's rules want memory that C keeps after a
// call returns to be C memory, e.g. an mmap of the checkpoint wrapped with unsafe.Slice.)
package moert

/*
#cgo CFLAGS: -I${SRCDIR}/../../abi
#cgo LDFLAGS: -L${SRCDIR}/../../build-test -Wl,-rpath,${SRCDIR}/../../build-test -lmoert
#include <stdlib.h>
#include <string.h>
#include "moert.h"

// The argument structs hold pointers to Go memory, which cgo does not allow in Go-made
// structs; these helpers build them on the C stack instead.
static moert_route_args mg_route_args(uint32_t T, moert_dtype dt, const void *logits,
                                      const float *bias) {
  moert_route_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.num_tokens = T;
  a.logits_dtype = dt;
  a.memory = MOERT_MEMORY_HOST;
  a.logits = logits;
  a.correction_bias = bias;
  a.mode = MOERT_ROUTING_AUTO;
  return a;
}
static moert_forward_args mg_forward_args(const moert_experts *ex, const void *x, void *y,
                                          uint32_t acc) {
  moert_forward_args f;
  memset(&f, 0, sizeof f);
  f.struct_size = sizeof f;
  f.experts = ex;
  f.memory = MOERT_MEMORY_HOST;
  f.x = x;
  f.y = y;
  f.accumulate = acc;
  return f;
}
static moert_status mg_route(moert_scratch *s, uint32_t T, moert_dtype dt, const void *logits,
                             const float *bias) {
  moert_route_args a = mg_route_args(T, dt, logits, bias);
  return moert_route(s, &a, NULL);
}
static moert_status mg_forward(moert_scratch *s, const moert_experts *ex, const void *x,
                               void *y, uint32_t acc) {
  moert_forward_args f = mg_forward_args(ex, x, y, acc);
  return moert_forward(s, &f, NULL);
}
static moert_status mg_moe(moert_scratch *s, uint32_t T, moert_dtype dt, const void *logits,
                           const float *bias, const moert_experts *ex, const void *x, void *y,
                           uint32_t acc) {
  moert_route_args a = mg_route_args(T, dt, logits, bias);
  moert_forward_args f = mg_forward_args(ex, x, y, acc);
  return moert_moe(s, &a, &f, NULL);
}
static moert_status mg_experts(moert_runtime *rt, const moert_layer_desc *d, uint32_t layout,
                               const void *gate, const void *up, const void *gate_up,
                               const void *down, const void *sg, const void *su,
                               const void *sd, const void *seg, moert_experts **out) {
  moert_experts_desc w;
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.layout = layout;
  w.memory = MOERT_MEMORY_HOST;
  w.gate = gate;
  w.up = up;
  w.gate_up = gate_up;
  w.down = down;
  w.shared_gate = sg;
  w.shared_up = su;
  w.shared_down = sd;
  w.shared_expert_gate = seg;
  return moert_experts_create(rt, d, &w, out);
}
static moert_status mg_runtime(moert_backend b, int32_t dev, uint32_t threads, const char *cache,
                               int use_cache, moert_runtime **out) {
  moert_runtime_options o;
  moert_runtime_options_init(&o);
  o.backend = b;
  o.device_ordinal = dev;
  o.num_threads = threads;
  o.cache_dir = use_cache ? cache : NULL;
  return moert_runtime_create(&o, out);
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// ---- status and errors ----

// Status is a moert_status code.  New codes may be added; treat any unknown non-zero
// code as an error.
type Status int32

const (
	StatusOK                 Status = C.MOERT_OK
	StatusInvalidArgument    Status = C.MOERT_ERR_INVALID_ARGUMENT
	StatusNullPointer        Status = C.MOERT_ERR_NULL_POINTER
	StatusStructSize         Status = C.MOERT_ERR_STRUCT_SIZE
	StatusUnsupported        Status = C.MOERT_ERR_UNSUPPORTED
	StatusOutOfMemory        Status = C.MOERT_ERR_OUT_OF_MEMORY
	StatusTooManyTokens      Status = C.MOERT_ERR_TOO_MANY_TOKENS
	StatusNaNLogit           Status = C.MOERT_ERR_NAN_LOGIT
	StatusShapeMismatch      Status = C.MOERT_ERR_SHAPE_MISMATCH
	StatusWrongRuntime       Status = C.MOERT_ERR_WRONG_RUNTIME
	StatusNotRouted          Status = C.MOERT_ERR_NOT_ROUTED
	StatusBackendUnavailable Status = C.MOERT_ERR_BACKEND_UNAVAILABLE
	StatusDriver             Status = C.MOERT_ERR_DRIVER
	StatusCompile            Status = C.MOERT_ERR_COMPILE
	StatusExpertID           Status = C.MOERT_ERR_EXPERT_ID
	StatusInternal           Status = C.MOERT_ERR_INTERNAL
)

// String is the library's name and description of the code.
func (s Status) String() string {
	return C.GoString(C.moert_status_string(C.moert_status(s)))
}

// Error is a failed call: the status and the library's sentence (the bad argument and its
// value, or the cause).
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return e.Status.String() + ": " + e.Message }

// Is matches a sentinel (an *Error with no Message) of the same Status, so
// errors.Is(err, moert.ErrNotRouted) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Status == e.Status
}

// Sentinels for errors.Is.
var (
	ErrInvalidArgument    = &Error{Status: StatusInvalidArgument}
	ErrTooManyTokens      = &Error{Status: StatusTooManyTokens}
	ErrNaNLogit           = &Error{Status: StatusNaNLogit}
	ErrNotRouted          = &Error{Status: StatusNotRouted}
	ErrExpertID           = &Error{Status: StatusExpertID}
	ErrBackendUnavailable = &Error{Status: StatusBackendUnavailable}
	ErrClosed             = &Error{Status: StatusNullPointer, Message: "the handle is closed"}
)

// call runs f and, on failure, reads the thread-local last error on the same OS thread
// (a goroutine may otherwise move between threads between the two cgo calls).
func call(f func() C.moert_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := f()
	if st == C.MOERT_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(C.moert_last_error())}
}

func invalid(format string, args ...any) error {
	return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// HeaderVersion is MOERT_VERSION_NUMBER of the moert.h this package was built with.
const HeaderVersion = uint32(C.MOERT_VERSION_NUMBER)

// Version is the loaded library's MAJOR*10000 + MINOR*100 + PATCH.
func Version() uint32 { return uint32(C.moert_version()) }

// VersionString is the loaded library's "MAJOR.MINOR.PATCH".
func VersionString() string { return C.GoString(C.moert_version_string()) }

// ---- enumerations and element types ----

type Backend uint32

const (
	BackendAuto Backend = C.MOERT_BACKEND_AUTO
	BackendCPU  Backend = C.MOERT_BACKEND_CPU
	BackendCUDA Backend = C.MOERT_BACKEND_CUDA
)

type DType uint32

const (
	F32DType  DType = C.MOERT_DTYPE_F32
	BF16DType DType = C.MOERT_DTYPE_BF16
	F16DType  DType = C.MOERT_DTYPE_F16
)

type RouterKind uint32

const (
	RouterSoftmaxTopK      RouterKind = C.MOERT_ROUTER_SOFTMAX_TOPK
	RouterSigmoidGroupTopK RouterKind = C.MOERT_ROUTER_SIGMOID_GROUP_TOPK
)

type SharedGate uint32

const (
	SharedGateNone    SharedGate = C.MOERT_SHARED_GATE_NONE
	SharedGateSigmoid SharedGate = C.MOERT_SHARED_GATE_SIGMOID
)

// BF16 is a bfloat16 value as its bits; F16 an IEEE half as its bits.
type BF16 uint16
type F16 uint16

// BF16FromFloat32 rounds to nearest even.
func BF16FromFloat32(f float32) BF16 {
	b := *(*uint32)(unsafe.Pointer(&f))
	if f != f {
		return BF16(b>>16 | 0x40)
	}
	return BF16((b + 0x7fff + (b>>16)&1) >> 16)
}

// Float32 widens exactly.
func (h BF16) Float32() float32 {
	b := uint32(h) << 16
	return *(*float32)(unsafe.Pointer(&b))
}

// Element is a host element type the library reads and writes.
type Element interface{ float32 | BF16 | F16 }

func dtypeOf[T Element]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return F32DType
	case BF16:
		return BF16DType
	default:
		return F16DType
	}
}

func ptr[T any](s []T) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}

// ---- runtime ----

// RuntimeOptions for NewRuntime; the zero value is backend AUTO, device 0, one thread
// per CPU, the default JIT cache.
type RuntimeOptions struct {
	Backend       Backend
	DeviceOrdinal int
	NumThreads    int
	CacheDir      *string // nil = default; "" disables the disk cache
}

// Runtime is one per process and device; safe for concurrent use.
type Runtime struct {
	mu       sync.Mutex
	ptr      *C.moert_runtime
	children int
}

// NewRuntime creates a runtime; opts may be nil for the defaults.
func NewRuntime(opts *RuntimeOptions) (*Runtime, error) {
	if opts == nil {
		opts = &RuntimeOptions{}
	}
	if opts.NumThreads < 0 || opts.DeviceOrdinal < 0 {
		return nil, invalid("NumThreads %d and DeviceOrdinal %d must not be negative",
			opts.NumThreads, opts.DeviceOrdinal)
	}
	var cache *C.char
	useCache := C.int(0)
	if opts.CacheDir != nil {
		cache = C.CString(*opts.CacheDir)
		defer C.free(unsafe.Pointer(cache))
		useCache = 1
	}
	var out *C.moert_runtime
	err := call(func() C.moert_status {
		return C.mg_runtime(C.moert_backend(opts.Backend), C.int32_t(opts.DeviceOrdinal),
			C.uint32_t(opts.NumThreads), cache, useCache, &out)
	})
	if err != nil {
		return nil, err
	}
	r := &Runtime{ptr: out}
	runtime.SetFinalizer(r, func(r *Runtime) { r.Close() })
	return r, nil
}

// Close destroys the runtime.  It fails while a Scratch or Experts made from it is still
// open; closing twice is a no-op.
func (r *Runtime) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr == nil {
		return nil
	}
	if r.children > 0 {
		return invalid("Runtime.Close: %d scratch/experts made from it are still open", r.children)
	}
	C.moert_runtime_destroy(r.ptr)
	r.ptr = nil
	runtime.SetFinalizer(r, nil)
	return nil
}

func (r *Runtime) adopt() (*C.moert_runtime, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr == nil {
		return nil, ErrClosed
	}
	r.children++
	return r.ptr, nil
}

func (r *Runtime) release() {
	r.mu.Lock()
	r.children--
	r.mu.Unlock()
}

// Backend is the backend in use (CPU or CUDA).
func (r *Runtime) Backend() Backend {
	return Backend(C.moert_runtime_backend(r.ptr))
}

// BackendNote says how the backend was chosen.
func (r *Runtime) BackendNote() string {
	return C.GoString(C.moert_runtime_backend_note(r.ptr))
}

// ---- layer shape ----

// LayerDesc is the shape and router of one MoE layer (moert_layer_desc).
type LayerDesc struct {
	NumExperts, TopK, Hidden, Intermediate, SharedIntermediate int
	SharedGate                                                 SharedGate
	ActDType, WeightDType                                      DType
	Router                                                     RouterKind
	Renormalize                                                bool
	NGroup, TopKGroup                                          int
	RoutedScalingFactor                                        float32
	PlanBlockRows                                              int
}

// DefaultLayerDesc has the C defaults: softmax top-k, renormalised, bf16, scaling 1.
func DefaultLayerDesc() LayerDesc {
	return LayerDesc{Router: RouterSoftmaxTopK, Renormalize: true, ActDType: BF16DType,
		WeightDType: BF16DType, RoutedScalingFactor: 1}
}

func (d *LayerDesc) raw() (C.moert_layer_desc, error) {
	var c C.moert_layer_desc
	C.moert_layer_desc_init(&c)
	for _, v := range []int{d.NumExperts, d.TopK, d.Hidden, d.Intermediate,
		d.SharedIntermediate, d.NGroup, d.TopKGroup, d.PlanBlockRows} {
		if v < 0 || v > 1<<31 {
			return c, invalid("LayerDesc has a size of %d", v)
		}
	}
	c.num_experts = C.uint32_t(d.NumExperts)
	c.top_k = C.uint32_t(d.TopK)
	c.hidden = C.uint32_t(d.Hidden)
	c.intermediate = C.uint32_t(d.Intermediate)
	c.shared_intermediate = C.uint32_t(d.SharedIntermediate)
	c.shared_gate = C.moert_shared_gate(d.SharedGate)
	c.act_dtype = C.moert_dtype(d.ActDType)
	c.weight_dtype = C.moert_dtype(d.WeightDType)
	c.router = C.moert_router_kind(d.Router)
	c.renormalize = 0
	if d.Renormalize {
		c.renormalize = 1
	}
	c.n_group = C.uint32_t(d.NGroup)
	c.topk_group = C.uint32_t(d.TopKGroup)
	c.routed_scaling_factor = C.float(d.RoutedScalingFactor)
	c.plan_block_rows = C.uint32_t(d.PlanBlockRows)
	return c, nil
}

func needLen(what string, have, want int) error {
	if have < want {
		return invalid("%s has %d elements; the layer needs %d", what, have, want)
	}
	return nil
}

// ---- experts ----

// Weights of one layer, host memory, borrowed.  Set Gate, Up and Down ([E,I,H], [E,I,H],
// [E,H,I]) for the stacked layout, or GateUp ([E,2I,H]: gate rows then up rows) and Down
// for transformers' fused layout.  The Shared* fields are the shared expert's, when the
// layer has one.
type Weights[W Element] struct {
	Gate, Up, GateUp, Down                             []W
	SharedGate, SharedUp, SharedDown, SharedExpertGate []W
}

// Experts is an immutable view of one layer's weights; safe for concurrent use.
type Experts struct {
	ptr     *C.moert_experts
	rt      *Runtime
	weights any // keeps the borrowed slices reachable until Close
	once    sync.Once
}

// NewExperts makes a view of w for layers of shape desc.  The slices must not change
// while the view is open.
func NewExperts[W Element](rt *Runtime, desc LayerDesc, w Weights[W]) (*Experts, error) {
	if dt := dtypeOf[W](); dt != desc.WeightDType {
		return nil, invalid("the weights are dtype %d; the layer desc says %d", dt, desc.WeightDType)
	}
	e, h, i, is := desc.NumExperts, desc.Hidden, desc.Intermediate, desc.SharedIntermediate
	layout := C.uint32_t(C.MOERT_LAYOUT_STACKED)
	if w.GateUp != nil {
		layout = C.MOERT_LAYOUT_STACKED_GATE_UP
		if err := needLen("GateUp", len(w.GateUp), e*2*i*h); err != nil {
			return nil, err
		}
	} else {
		if err := needLen("Gate", len(w.Gate), e*i*h); err != nil {
			return nil, err
		}
		if err := needLen("Up", len(w.Up), e*i*h); err != nil {
			return nil, err
		}
	}
	if err := needLen("Down", len(w.Down), e*h*i); err != nil {
		return nil, err
	}
	if is > 0 {
		for _, c := range []struct {
			name string
			have int
			want int
		}{{"SharedGate", len(w.SharedGate), is * h}, {"SharedUp", len(w.SharedUp), is * h},
			{"SharedDown", len(w.SharedDown), h * is}} {
			if err := needLen(c.name, c.have, c.want); err != nil {
				return nil, err
			}
		}
		if w.SharedExpertGate != nil {
			if err := needLen("SharedExpertGate", len(w.SharedExpertGate), h); err != nil {
				return nil, err
			}
		}
	}
	d, err := desc.raw()
	if err != nil {
		return nil, err
	}
	rtp, err := rt.adopt()
	if err != nil {
		return nil, err
	}
	var out *C.moert_experts
	err = call(func() C.moert_status {
		return C.mg_experts(rtp, &d, layout, ptr(w.Gate), ptr(w.Up), ptr(w.GateUp), ptr(w.Down),
			ptr(w.SharedGate), ptr(w.SharedUp), ptr(w.SharedDown), ptr(w.SharedExpertGate), &out)
	})
	if err != nil {
		rt.release()
		return nil, err
	}
	x := &Experts{ptr: out, rt: rt, weights: w}
	runtime.SetFinalizer(x, func(x *Experts) { x.Close() })
	return x, nil
}

// Close destroys the view; closing twice is a no-op.
func (x *Experts) Close() error {
	x.once.Do(func() {
		C.moert_experts_destroy(x.ptr)
		x.ptr = nil
		x.weights = nil
		x.rt.release()
		runtime.SetFinalizer(x, nil)
	})
	return nil
}

// ---- scratch ----

// Scratch holds every buffer route and forward need for one layer shape; reuse it for
// every layer of that shape.  Use it from one goroutine at a time.
type Scratch struct {
	ptr       *C.moert_scratch
	rt        *Runtime
	desc      LayerDesc
	maxTokens int
	routed    int // tokens the library may read in the next forward (see noteRouting)
}

// NewScratch makes a scratch for layers of shape desc and up to maxTokens tokens a call.
func (r *Runtime) NewScratch(desc LayerDesc, maxTokens int) (*Scratch, error) {
	if maxTokens < 0 || maxTokens > 1<<31 {
		return nil, invalid("maxTokens %d is out of range", maxTokens)
	}
	d, err := desc.raw()
	if err != nil {
		return nil, err
	}
	rtp, err := r.adopt()
	if err != nil {
		return nil, err
	}
	var out *C.moert_scratch
	err = call(func() C.moert_status {
		return C.moert_scratch_create(rtp, &d, C.uint32_t(maxTokens), &out)
	})
	if err != nil {
		r.release()
		return nil, err
	}
	s := &Scratch{ptr: out, rt: r, desc: desc, maxTokens: maxTokens}
	runtime.SetFinalizer(s, func(s *Scratch) { s.Close() })
	return s, nil
}

// Close destroys the scratch; closing twice is a no-op.
func (s *Scratch) Close() error {
	if s.ptr == nil {
		return nil
	}
	C.moert_scratch_destroy(s.ptr)
	s.ptr = nil
	s.rt.release()
	runtime.SetFinalizer(s, nil)
	return nil
}

// Memory is the host and device bytes the scratch holds.
func (s *Scratch) Memory() (host, device uint64, err error) {
	if s.ptr == nil {
		return 0, 0, ErrClosed
	}
	var h, d C.uint64_t
	err = call(func() C.moert_status { return C.moert_scratch_memory(s.ptr, &h, &d) })
	return uint64(h), uint64(d), err
}

// noteRouting: after success the library routed `tokens`; after a failure it holds the
// old routing, the new one or none, so the larger count bounds what forward may read.
func (s *Scratch) noteRouting(err error, tokens int) error {
	if err == nil || tokens > s.routed {
		s.routed = tokens
	}
	return err
}

func (s *Scratch) routeTokens(nLogits, nBias int, hasBias bool) (int, error) {
	if s.ptr == nil {
		return 0, ErrClosed
	}
	e := s.desc.NumExperts
	if e == 0 || nLogits%e != 0 {
		return 0, invalid("logits has %d elements, not a whole number of rows of E = %d", nLogits, e)
	}
	if hasBias {
		if err := needLen("correctionBias", nBias, e); err != nil {
			return 0, err
		}
	}
	return nLogits / e, nil
}

func (s *Scratch) checkActs(dt DType, tokens, nx, ny int) error {
	if dt != s.desc.ActDType {
		return invalid("x and y are dtype %d; the layer desc says %d", dt, s.desc.ActDType)
	}
	n := tokens * s.desc.Hidden
	if err := needLen("x", nx, n); err != nil {
		return err
	}
	return needLen("y", ny, n)
}

// Route routes len(logits)/E tokens (logits [T, E]); correctionBias [E] (sigmoid router)
// may be nil.  The result stays in the scratch for Forward, Routing and Plan.
func Route[L Element](s *Scratch, logits []L, correctionBias []float32) error {
	t, err := s.routeTokens(len(logits), len(correctionBias), correctionBias != nil)
	if err != nil {
		return err
	}
	err = call(func() C.moert_status {
		return C.mg_route(s.ptr, C.uint32_t(t), C.moert_dtype(dtypeOf[L]()), ptr(logits),
			(*C.float)(ptr(correctionBias)))
	})
	return s.noteRouting(err, t)
}

// SetRouting takes the engine's own routing: ids and weights [T, k].
func (s *Scratch) SetRouting(ids []int32, weights []float32) error {
	if s.ptr == nil {
		return ErrClosed
	}
	k := s.desc.TopK
	if k == 0 || len(ids)%k != 0 || len(weights) != len(ids) {
		return invalid("ids (%d) and weights (%d) must both hold T*k (k = %d) elements",
			len(ids), len(weights), k)
	}
	t := len(ids) / k
	err := call(func() C.moert_status {
		return C.moert_set_routing(s.ptr, C.uint32_t(t), (*C.int32_t)(ptr(ids)),
			(*C.float)(ptr(weights)), nil)
	})
	return s.noteRouting(err, t)
}

// Forward computes y = MoE(x) (or y += MoE(x) with accumulate) for the tokens of the last
// Route/SetRouting; x and y [T, H].
func Forward[A Element](s *Scratch, x *Experts, in, out []A, accumulate bool) error {
	if s.ptr == nil || x.ptr == nil {
		return ErrClosed
	}
	if err := s.checkActs(dtypeOf[A](), s.routed, len(in), len(out)); err != nil {
		return err
	}
	acc := C.uint32_t(0)
	if accumulate {
		acc = 1
	}
	err := call(func() C.moert_status { return C.mg_forward(s.ptr, x.ptr, ptr(in), ptr(out), acc) })
	runtime.KeepAlive(x)
	return err
}

// MoE is Route then Forward in one call.
func MoE[L, A Element](s *Scratch, x *Experts, logits []L, correctionBias []float32, in, out []A,
	accumulate bool) error {
	t, err := s.routeTokens(len(logits), len(correctionBias), correctionBias != nil)
	if err != nil {
		return err
	}
	if x.ptr == nil {
		return ErrClosed
	}
	if err := s.checkActs(dtypeOf[A](), t, len(in), len(out)); err != nil {
		return err
	}
	acc := C.uint32_t(0)
	if accumulate {
		acc = 1
	}
	err = call(func() C.moert_status {
		return C.mg_moe(s.ptr, C.uint32_t(t), C.moert_dtype(dtypeOf[L]()), ptr(logits),
			(*C.float)(ptr(correctionBias)), x.ptr, ptr(in), ptr(out), acc)
	})
	runtime.KeepAlive(x)
	return s.noteRouting(err, t)
}

// Routing is a copy of the last routing: ExpertIDs and ExpertWeights [T, k].
type Routing struct {
	NumTokens, TopK int
	ExpertIDs       []int32
	ExpertWeights   []float32
}

// Routing copies out the last routing.
func (s *Scratch) Routing() (Routing, error) {
	if s.ptr == nil {
		return Routing{}, ErrClosed
	}
	var v C.moert_routing_view
	v.struct_size = C.uint32_t(unsafe.Sizeof(v))
	if err := call(func() C.moert_status { return C.moert_scratch_routing(s.ptr, &v) }); err != nil {
		return Routing{}, err
	}
	n := int(v.num_tokens) * int(v.top_k)
	r := Routing{NumTokens: int(v.num_tokens), TopK: int(v.top_k)}
	if n > 0 {
		r.ExpertIDs = append([]int32(nil), unsafe.Slice((*int32)(unsafe.Pointer(v.expert_ids)), n)...)
		r.ExpertWeights = append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(v.expert_weights)), n)...)
	}
	return r, nil
}

// Plan is a copy of the bucket plan of the last routing (see moert_plan_view).
type Plan struct {
	NumTokens, NumExperts, TopK  int
	Offsets, PackedToken, PairOf []int32
}

// Plan copies out the plan of the last routing.
func (s *Scratch) Plan() (Plan, error) {
	if s.ptr == nil {
		return Plan{}, ErrClosed
	}
	var v C.moert_plan_view
	v.struct_size = C.uint32_t(unsafe.Sizeof(v))
	if err := call(func() C.moert_status { return C.moert_scratch_plan(s.ptr, &v) }); err != nil {
		return Plan{}, err
	}
	pairs := int(v.num_tokens) * int(v.top_k)
	cp := func(p *C.int32_t, n int) []int32 {
		if n == 0 {
			return nil
		}
		return append([]int32(nil), unsafe.Slice((*int32)(unsafe.Pointer(p)), n)...)
	}
	return Plan{NumTokens: int(v.num_tokens), NumExperts: int(v.num_experts), TopK: int(v.top_k),
		Offsets: cp(v.offsets, int(v.num_experts)+1), PackedToken: cp(v.packed_token, pairs),
		PairOf: cp(v.pair_of, pairs)}, nil
}
