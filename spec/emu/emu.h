// The emulated GPU: kernels/*.cu compiled as host C++ (make EMU=1), so the
// parity specs run our kernels on any machine. Included before each kernel file
// (g++ -include), after tools/emu-cu.pl has turned `k<<<grid, block, shm, s>>>(...)`
// into `emu::launch(k, grid, block, shm, s)(...)`.
//
// A launch is queued on the fake runtime's stream, which runs it (in the stream's
// order) when the host waits for it, or, on a stream being captured, becomes a
// node of the fake runtime's graph that each replay runs. It runs its blocks one
// after the other; the threads of a block are fibers
// (spec/emu/emu.cpp) that run until they finish or reach a barrier:
// __syncthreads() waits for every thread of the block, a warp shuffle for the 32
// lanes of its warp, as on the GPU. A barrier that not every thread reaches (one
// returned, or waits at another __syncthreads) is undefined or a deadlock there;
// here it stops the process with a message, as does a shuffle in a partial warp.
// Blocks run in order, then in reverse order at the next launch, so that results
// that depend on the order of blocks (atomics, races between blocks) show. __shared__ variables
// are static (the block running uses them), registered by the lines cu2cpp.pl adds
// after each declaration (shared_guard, shared_file) and filled with 0xff bytes
// (NaN, -1) before each block, so that a block reading shared memory it has not
// written gets garbage, as on the GPU, not the last block's values. What this does not
// model: memory ordering between threads (there is no concurrency), the
// floating-point details of the GPU's maths library, cuBLAS and cuDNN (the CPU's
// stand in), timing.
#ifndef MILES_EMU_H
#define MILES_EMU_H

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define KUNROLL // (nvcc's #pragma unroll, which g++ does not know)
#define __shared__ static

#include <cuda_runtime.h>
#include <cuda_bf16.h>

extern "C" {
#include "../c/fake_cudart.h"
}

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

// A __shared__ variable's storage, filled with 0xff before each block: a
// function-scope one is registered (and filled) the first time a thread reaches
// its declaration, a file-scope one at start-up.
void shared_guard(void *p, size_t n);
struct shared_file {
    shared_file(void *p, size_t n) { shared_guard(p, n); }
};

// Run body() as a grid of blocks of threads (block-major, threads as fibers).
void run_grid(dim3 grid, dim3 block, void (*body)(void *), void *ctx);
// Barriers: every thread of the block (at the same __syncthreads: site), or every
// lane of the warp.
void sync_block(const char *site);
void sync_warp();
// This lane's slot of the warp's exchange buffer, and another lane's.
void *lane_slot(unsigned lane);
unsigned lane_id();
// A launch bound to its arguments: run now, or kept by a CUDA graph capture (the
// fake runtime's node replays it).
template <typename... A> struct bound_launch {
    void (*kernel)(A...);
    dim3 grid, block;
    std::tuple<A...> args;

    static void run(void *p)
    {
        auto *b = static_cast<bound_launch *>(p);
        run_grid(b->grid, b->block, [](void *q) {
            auto *c = static_cast<bound_launch *>(q);
            std::apply(c->kernel, c->args);
        }, b);
    }
    static void drop(void *p) { delete static_cast<bound_launch *>(p); }
};

// Run the bound launch b now, or hand it to s's capture.
template <typename... A> void run_or_capture(bound_launch<A...> *b, cudaStream_t s)
{
    fake_trace_kernel(s, reinterpret_cast<const void *>(b->kernel), b->grid, b->block);
    fake_device_work(s, reinterpret_cast<const void *>(b->kernel), b->grid.x,
                     &bound_launch<A...>::run, b, &bound_launch<A...>::drop);
}

template <typename... A> struct launcher {
    void (*kernel)(A...);
    dim3 grid, block;
    cudaStream_t stream;
    template <typename... B> void operator()(B &&...b) const
    {
        run_or_capture(new bound_launch<A...>{kernel, grid, block,
                                              std::tuple<A...>(std::forward<B>(b)...)},
                       stream);
    }
};

template <typename... A>
launcher<A...> launch(void (*kernel)(A...), dim3 grid, dim3 block, size_t shm, cudaStream_t s)
{
    (void)shm;
    return launcher<A...>{kernel, grid, block, s};
}

// cudaLaunchKernel's way in (kernels/optim.cu): the kernel's arguments by pointer,
// copied into a bound launch (run now, or bound for a graph node).
template <typename... A, std::size_t... I>
bound_launch<A...> *bind_at(void (*k)(A...), dim3 g, dim3 b, void **args, std::index_sequence<I...>)
{
    return new bound_launch<A...>{
        k, g, b, std::tuple<A...>(*static_cast<std::remove_reference_t<A> *>(args[I])...)};
}

template <typename... A>
void *bind_by_pointer(const void *func, dim3 g, dim3 b, void **args, void (**run)(void *),
                      void (**drop)(void *))
{
    auto k = reinterpret_cast<void (*)(A...)>(const_cast<void *>(func));
    *run = &bound_launch<A...>::run;
    *drop = &bound_launch<A...>::drop;
    return bind_at(k, g, b, args, std::index_sequence_for<A...>{});
}

using binder = void *(*)(const void *, dim3, dim3, void **, void (**)(void *), void (**)(void *));
// Remember how to bind kernel func to a cudaLaunchKernel argument array.
void note_kernel(const void *func, binder bind);

template <typename... A> void note(void (*kernel)(A...))
{
    note_kernel(reinterpret_cast<const void *>(kernel), &bind_by_pointer<A...>);
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

// (a macro: the barrier's place in the source, which every thread must reach)
#define __syncthreads() emu::sync_block(__FILE__ ":" EMU_STR(__LINE__))
#define EMU_STR(x) EMU_STR_(x)
#define EMU_STR_(x) #x

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
