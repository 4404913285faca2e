/* moert_device.h — device helpers shared by the CUDA kernels (compiled by NVRTC only):
 * 16-bit float conversions written as PTX, so the kernels need none of the toolkit's
 * headers at run time, and the activation type chosen by -DMOERT_ACT (1 = bf16, 2 = f16, 3 = f32). */
#ifndef MOERT_DEVICE_H
#define MOERT_DEVICE_H

#define MOERT_FULL_MASK 0xffffffffu
#define MOERT_INT_MAX 0x7fffffff

/* Programmatic dependent launch.  On sm_90 the backend launches plan, the decode kernels
 * and the combine with programmatic stream serialisation: a kernel may start while the one
 * before it on the stream drains.  moert_pdl_wait() blocks until that kernel has finished
 * and its writes are visible (so it comes before the first read of anything it wrote);
 * moert_pdl_trigger() lets the next kernel start early.  Both are no-ops when the launch
 * did not ask for it, and on older GPUs. */
static __device__ __forceinline__ void moert_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
static __device__ __forceinline__ void moert_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

typedef unsigned short moert_half_bits; /* a bf16 or f16 value, as its bits */

static __device__ __forceinline__ float moert_bf16_f32(unsigned short h) {
  return __uint_as_float(((unsigned int)h) << 16);
}
static __device__ __forceinline__ float moert_f16_f32(unsigned short h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
static __device__ __forceinline__ unsigned short moert_f32_bf16(float f) {
  unsigned short h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
static __device__ __forceinline__ unsigned short moert_f32_f16(float f) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}

#ifdef MOERT_ACT
#if MOERT_ACT == 1
#define MOERT_MMA_TYPE "bf16"
static __device__ __forceinline__ float moert_act_f32(unsigned short h) { return moert_bf16_f32(h); }
static __device__ __forceinline__ unsigned short moert_f32_act(float f) { return moert_f32_bf16(f); }
#elif MOERT_ACT == 2
#define MOERT_MMA_TYPE "f16"
static __device__ __forceinline__ float moert_act_f32(unsigned short h) { return moert_f16_f32(h); }
static __device__ __forceinline__ unsigned short moert_f32_act(float f) { return moert_f32_f16(f); }
#elif MOERT_ACT == 3
/* float32: no 16-bit helpers; the GEMMs use tf32 tensor cores (3 passes, see expert.cu) */
#else
#error "MOERT_ACT must be 1 (bf16), 2 (f16) or 3 (f32)"
#endif
#if MOERT_ACT != 3
/* two floats -> two 16-bit values packed low address first */
static __device__ __forceinline__ unsigned int moert_pack2(float lo, float hi) {
  return (unsigned int)moert_f32_act(lo) | ((unsigned int)moert_f32_act(hi) << 16);
}
#endif
#endif

#endif
