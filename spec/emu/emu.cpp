// The emulated GPU's scheduler (see emu.h): the threads of a block as fibers
// (ucontext), run in turn until each finishes or waits at a barrier; a barrier
// opens when every thread it waits for (the block's, or the warp's lanes) that has
// not finished is waiting at it. The turns go both ways (run_block).
#include "emu.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include <ucontext.h>

// Under AddressSanitizer (make SAN=1 EMU=1) the fibers tell it when the stack
// changes, so that it checks the kernels' memory accesses (device memory is host
// memory here: a kernel reading out of bounds is reported) without taking a
// switch for a stack overflow.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif


namespace emu {

thread_state *cur;

namespace {

enum wait_kind { RUNNING, AT_BLOCK, AT_WARP, DONE };

constexpr size_t STACK_BYTES = 256 * 1024;

struct fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    thread_state st;
    wait_kind wait = RUNNING;
    const char *site = nullptr; // the __syncthreads it waits at
    unsigned char slot[16];     // its lane's value in a shuffle
};

std::vector<fiber> fibers;
ucontext_t scheduler;
fiber *running;
void (*body_fn)(void *);
void *body_ctx;

#ifdef EMU_ASAN
const void *sched_bottom; // the scheduler's stack, as ASan saw it when it left it
size_t sched_size;
void *sched_fake;
#endif

// The switches between the scheduler and a fiber, told to ASan when it is there.
void to_fiber(fiber &f)
{
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(&sched_fake, f.stack.data(), f.stack.size());
#endif
    swapcontext(&scheduler, &f.ctx);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(sched_fake, nullptr, nullptr);
#endif
}

void to_scheduler(fiber &f, bool finished)
{
#ifdef EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(finished ? nullptr : &fake, sched_bottom, sched_size);
    if (finished)
        return; // the return to uc_link switches
    swapcontext(&f.ctx, &scheduler);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    if (!finished)
        swapcontext(&f.ctx, &scheduler);
#endif
}

void fiber_main()
{
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &sched_bottom, &sched_size);
#endif
    body_fn(body_ctx);
    running->wait = DONE;
    to_scheduler(*running, true); // then returning resumes uc_link: the scheduler
}

// A kernel did what a GPU does not define (or deadlocks on): stop, saying what.
[[noreturn]] void deadlock(const char *what)
{
    std::fprintf(stderr, "emu: %s\n", what);
    std::abort();
}

// Open the barriers whose threads have all arrived; false if none could open.
bool open_barriers(unsigned n)
{
    bool opened = false;
    // the block: every thread at the same __syncthreads (none returned: on the GPU
    // a barrier is for all of the block's threads)
    bool any_block = false, all_block = true, exited = false;
    const char *site = nullptr;
    for (unsigned t = 0; t < n; t++) {
        const fiber &f = fibers[t];
        exited |= f.wait == DONE;
        if (f.wait == AT_BLOCK) {
            if (any_block && f.site != site)
                deadlock("threads of a block wait at different __syncthreads");
            site = f.site;
            any_block = true;
        }
        all_block &= f.wait == AT_BLOCK || f.wait == DONE;
    }
    if (any_block && all_block && exited)
        deadlock("a __syncthreads after some of the block's threads returned");
    if (any_block && all_block) {
        for (unsigned t = 0; t < n; t++)
            if (fibers[t].wait == AT_BLOCK)
                fibers[t].wait = RUNNING;
        return true;
    }
    // each warp: every lane at the warp barrier (a shuffle with the full mask,
    // which a lane that has returned cannot join: undefined on the GPU)
    for (unsigned w = 0; w * 32 < n; w++) {
        bool any = false, all = true, exited = false;
        for (unsigned t = w * 32; t < n && t < w * 32 + 32; t++) {
            exited |= fibers[t].wait == DONE;
            any |= fibers[t].wait == AT_WARP;
            all &= fibers[t].wait == AT_WARP || fibers[t].wait == DONE;
        }
        if (any && exited)
            deadlock("a warp shuffle after some of its lanes returned");
        if (any && all) {
            for (unsigned t = w * 32; t < n && t < w * 32 + 32; t++)
                if (fibers[t].wait == AT_WARP)
                    fibers[t].wait = RUNNING;
            opened = true;
        }
    }
    return opened;
}

// Block b's threads run in turn, the order reversed every other pass and every
// other block: a kernel whose threads read what others write without a barrier
// between gives other results in the two orders (a race on the GPU), which the
// specs' comparisons with the CPU then show.
// A fresh start of fiber f (apart from run_block: getcontext returns twice).
// The context is a copy of one taken once (getcontext is a system call; a launch
// starts a fiber for every thread of every block).
__attribute__((noinline)) void init_fiber(fiber &f)
{
    static ucontext_t pristine;
    static bool taken;
    if (!taken) {
        getcontext(&pristine);
        taken = true;
    }
    f.wait = RUNNING;
    f.ctx = pristine;
#if defined(__x86_64__) && defined(__GLIBC__)
    f.ctx.uc_mcontext.fpregs = &f.ctx.__fpregs_mem; // (it pointed into pristine)
#endif
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = &scheduler;
    makecontext(&f.ctx, fiber_main, 0);
}

// The registered __shared__ variables (see shared_guard).
std::vector<std::pair<void *, size_t>> &shared_vars()
{
    static std::vector<std::pair<void *, size_t>> v;
    return v;
}

void poison_shared()
{
    for (auto &sv : shared_vars())
        std::memset(sv.first, 0xff, sv.second);
}

void run_block(unsigned n, unsigned long long b)
{
    poison_shared();
    for (unsigned t = 0; t < n; t++)
        init_fiber(fibers[t]);
    for (unsigned long long pass = b;; pass++) {
        bool ran = false, unfinished = false;
        for (unsigned i = 0; i < n; i++) {
            fiber &f = fibers[pass % 2 ? n - 1 - i : i];
            if (f.wait == DONE)
                continue;
            unfinished = true;
            if (f.wait != RUNNING)
                continue;
            running = &f;
            cur = &f.st;
            to_fiber(f);
            ran = true;
        }
        if (!unfinished)
            return;
        if (!ran && !open_barriers(n))
            deadlock("threads wait at barriers that cannot open");
    }
}

// Back to the scheduler until this thread's barrier opens.
void wait_at(wait_kind k)
{
    fiber *f = running;
    f->wait = k;
    to_scheduler(*f, false);
}

std::map<const void *, binder> &kernels_by_pointer()
{
    static std::map<const void *, binder> m;
    return m;
}

} // namespace

void run_grid(dim3 grid, dim3 block, void (*body)(void *), void *ctx)
{
    unsigned n = block.x * block.y * block.z;
    // the GPU's limits: 1024 threads a block, 2^31 - 1 blocks in x, 65535 in y and z
    if (n == 0 || n > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
        std::fprintf(stderr, "emu: invalid launch: grid %ux%ux%u, block %ux%ux%u\n", grid.x,
                     grid.y, grid.z, block.x, block.y, block.z);
        std::abort();
    }
    if (fibers.size() < n) {
        fibers.resize(n);
        for (fiber &f : fibers)
            if (f.stack.empty())
                f.stack.resize(STACK_BYTES);
    }
    thread_state *outer = cur;
    void (*outer_body)(void *) = body_fn;
    void *outer_ctx = body_ctx;
    body_fn = body;
    body_ctx = ctx;
    static unsigned long long launches;
    bool reverse = launches++ % 2;
    for (unsigned zi = 0; zi < grid.z; zi++)
        for (unsigned yi = 0; yi < grid.y; yi++)
            for (unsigned xi = 0; xi < grid.x; xi++) {
                unsigned z = reverse ? grid.z - 1 - zi : zi, y = reverse ? grid.y - 1 - yi : yi,
                         x = reverse ? grid.x - 1 - xi : xi;
                for (unsigned t = 0; t < n; t++) {
                    thread_state &s = fibers[t].st;
                    s.tid = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                    s.bid = uint3{x, y, z};
                    s.bdim = block;
                    s.gdim = grid;
                }
                run_block(n, ((unsigned long long)z * grid.y + y) * grid.x + x);
            }
    body_fn = outer_body;
    body_ctx = outer_ctx;
    cur = outer;
}

void sync_block(const char *site)
{
    running->site = site;
    wait_at(AT_BLOCK);
}

void sync_warp()
{
    wait_at(AT_WARP);
}

unsigned lane_id()
{
    return (unsigned)(running - fibers.data()) & 31u;
}

void *lane_slot(unsigned lane)
{
    unsigned self = (unsigned)(running - fibers.data());
    unsigned n = cur->bdim.x * cur->bdim.y * cur->bdim.z;
    if ((self & ~31u) + 32 > n)
        deadlock("a warp shuffle in a partial warp (the block is not a multiple of 32 threads)");
    return fibers[(self & ~31u) + lane].slot;
}

void shared_guard(void *p, size_t n)
{
    for (auto &sv : shared_vars())
        if (sv.first == p)
            return;
    shared_vars().emplace_back(p, n);
    std::memset(p, 0xff, n); // (this block's first use: nobody has written it yet)
}

void note_kernel(const void *func, binder bind)
{
    kernels_by_pointer()[func] = bind;
}

} // namespace emu

// The fake runtime's cudaLaunchKernel: the kernels noted by emu::note, bound to a
// copy of their arguments (for a graph node), or run now.
extern "C" int emu_bind_kernel(const void *func, dim3 grid, dim3 block, void **args,
                               void (**run)(void *), void **ctx, void (**drop)(void *))
{
    auto &m = emu::kernels_by_pointer();
    auto it = m.find(func);
    if (it == m.end())
        return -1;
    *ctx = it->second(func, grid, block, args, run, drop);
    return 0;
}
