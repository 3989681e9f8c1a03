// The emulated GPU: kernels/*.cu compiled as host C++ (make EMU=1), so the
// parity specs run our kernels on any machine. Included before each kernel file
// (g++ -include), after tools/emu-cu.pl has turned `k<<<grid, block, shm, s>>>(...)`
// into `emu::launch(k, grid, block, shm, s)(...)`.
//
// A launch runs its blocks one after the other; the threads of a block are fibers
// (spec/emu/emu.cpp) that run until they finish or reach a barrier:
// __syncthreads() waits for every thread of the block, a warp shuffle for the 32
// lanes of its warp, as on the GPU. A barrier that not every thread reaches is a
// deadlock there; here it stops the process with a message. __shared__ variables
// are static: one per kernel, which the block running uses. What this does not
// model: memory ordering between threads (there is no concurrency), the
// floating-point details of the GPU's maths library, timing.
#ifndef MILES_EMU_H
#define MILES_EMU_H

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

#include <cuda_runtime.h>
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

namespace emu {

struct thread_state {
    uint3 tid, bid;
    dim3 bdim, gdim;
};

// The thread running now.
extern thread_state *cur;

// Run body() as a grid of blocks of threads (block-major, threads as fibers).
void run_grid(dim3 grid, dim3 block, void (*body)(void *), void *ctx);
// Barriers: every thread of the block, or every lane of the warp.
void sync_block();
void sync_warp();
// This lane's slot of the warp's exchange buffer, and another lane's.
void *lane_slot(unsigned lane);
unsigned lane_id();
// Refuse a launch on a stream being captured (graphs are not emulated).
void check_not_capturing(cudaStream_t s);
// Remember how to run kernel func from a cudaLaunchKernel argument array.
void note_kernel(const void *func, void (*run)(const void *func, dim3 g, dim3 b, void **args));

template <typename... A> struct launcher {
    void (*kernel)(A...);
    dim3 grid, block;
    template <typename... B> void operator()(B &&...b) const
    {
        std::tuple<A...> args(std::forward<B>(b)...);
        struct ctx_t {
            void (*k)(A...);
            std::tuple<A...> *args;
        } ctx{kernel, &args};
        run_grid(grid, block,
                 [](void *p) {
                     auto *c = static_cast<ctx_t *>(p);
                     std::apply(c->k, *c->args);
                 },
                 &ctx);
    }
};

template <typename... A>
launcher<A...> launch(void (*kernel)(A...), dim3 grid, dim3 block, size_t shm, cudaStream_t s)
{
    (void)shm;
    check_not_capturing(s);
    return launcher<A...>{kernel, grid, block};
}

// cudaLaunchKernel's way in (kernels/optim.cu): the kernel's arguments by pointer.
template <typename... A, std::size_t... I>
void run_by_pointer_at(void (*k)(A...), dim3 g, dim3 b, void **args, std::index_sequence<I...>)
{
    launcher<A...>{k, g, b}(*static_cast<std::remove_reference_t<A> *>(args[I])...);
}

template <typename... A> void run_by_pointer(const void *func, dim3 g, dim3 b, void **args)
{
    auto k = reinterpret_cast<void (*)(A...)>(const_cast<void *>(func));
    run_by_pointer_at(k, g, b, args, std::index_sequence_for<A...>{});
}

template <typename... A> void note(void (*kernel)(A...))
{
    note_kernel(reinterpret_cast<const void *>(kernel), &run_by_pointer<A...>);
}

// A lane's value to the others: every lane of the warp writes, then reads.
template <typename T> T exchange(T v, unsigned from)
{
    static_assert(sizeof(T) <= 16, "emu: shuffles of up to 16 bytes");
    std::memcpy(lane_slot(lane_id()), &v, sizeof v);
    sync_warp();
    T r;
    std::memcpy(&r, lane_slot(from), sizeof r);
    sync_warp();
    return r;
}

} // namespace emu

// The maths functions device code finds unqualified.
using std::isfinite;
using std::isinf;
using std::isnan;

#define threadIdx (emu::cur->tid)
#define blockIdx (emu::cur->bid)
#define blockDim (emu::cur->bdim)
#define gridDim (emu::cur->gdim)

inline void __syncthreads()
{
    emu::sync_block();
}

template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
    (void)mask;
    return emu::exchange(v, (emu::lane_id() ^ (unsigned)lane_mask) & 31u);
}

template <typename T> T __shfl_down_sync(unsigned mask, T v, unsigned delta)
{
    (void)mask;
    unsigned from = emu::lane_id() + delta;
    return emu::exchange(v, from < 32 ? from : emu::lane_id());
}

// The IEEE operations the kernels spell out (no contraction here: -ffp-contract=off).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __double2float_rn(double a) { return (float)a; }

// Atomics: the fibers never run at the same time.
template <typename T> inline T emu_fetch_add(T *p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}
inline float atomicAdd(float *p, float v) { return emu_fetch_add(p, v); }
inline double atomicAdd(double *p, double v) { return emu_fetch_add(p, v); }
inline int atomicAdd(int *p, int v) { return emu_fetch_add(p, v); }
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v)
{
    return emu_fetch_add(p, v);
}
inline int atomicOr(int *p, int v)
{
    int old = *p;
    *p = old | v;
    return old;
}

#endif
