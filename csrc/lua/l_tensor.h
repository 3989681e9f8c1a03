/* Shared helpers of the Lua bindings: the tensor userdata and argument parsing.
 * The bindings only translate between the Lua stack and the core; they hold no
 * maths. Dims and indices are 1-based on the Lua side, 0-based in the core. */
#ifndef MILES_L_TENSOR_H
#define MILES_L_TENSOR_H

#include <lauxlib.h>
#include <lua.h>

#include "../tensor.h"

#define LT_TENSOR_MT "miles.Tensor"

/* Push a tensor, taking over the caller's reference. A NULL t raises the core's
 * error message as a Lua error (so `lt_push(L, op_x(...))` reports failures). */
int lt_push(lua_State *L, tensor *t);
/* The tensor at idx, or a Lua error naming the argument ("tensor expected"). */
tensor *lt_check(lua_State *L, int idx);
/* The tensor at idx, or NULL when it is not a tensor. */
tensor *lt_test(lua_State *L, int idx);
/* Raise the core's current error message. */
int lt_error(lua_State *L);
/* A global on/off setting as a Lua function f([on]) -> on: sets it when given a
 * boolean, then returns it. */
int lt_switch(lua_State *L, void (*set)(bool), bool (*get)(void));
/* A 0-dim int64 tensor holding v exactly, on dev (NULL with the error set). */
tensor *lt_int64_scalar(int64_t v, device dev);
/* A 1-based Lua dim (negative counts from the end) as a 0-based core dim. */
int lt_dim(lua_State *L, int idx);
int lt_optdim(lua_State *L, int idx, int def0);
/* A dtype name at idx (or the default). */
dtype_t lt_optdtype(lua_State *L, int idx, dtype_t def);
/* A shape given as numbers from idx on, or as one table at idx. Returns ndim. */
int lt_shape(lua_State *L, int idx, int64_t *shape);

/* An int64 tensor of 1-based indices, as a new 0-based one (raises on error). */
tensor *lt_zero_based(lua_State *L, tensor *idx);
/* Raise unless t may be written in place now (autograd's rules). */
int lt_check_inplace(lua_State *L, tensor *t, const char *op);

/* Raise "<fname>: unknown option 'k'" unless every key of the table at idx is one
 * of the NULL-terminated list known (so a misspelt option does not pass silently). */
void lt_check_keys(lua_State *L, int idx, const char *fname, const char *const *known);

/* Each binding file registers its functions: into the `miles` table (funcs) and
 * as tensor methods (methods). */
void lt_register(lua_State *L, const luaL_Reg *funcs, const luaL_Reg *methods);

/* The binding files' registration entry points (called by luaopen_miles_core). */
void l_tensor_open(lua_State *L);
void l_ops_open(lua_State *L);
void l_autograd_open(lua_State *L);
void l_io_open(lua_State *L);
void l_sys_open(lua_State *L);
void l_pool_open(lua_State *L); /* l_pool.c: pooling, interpolate, dropout */
void l_optim_open(lua_State *L);
void l_conv_open(lua_State *L);
void l_checkpoint_open(lua_State *L);
void l_data_open(lua_State *L); /* l_data.c: data loaders, miles.checksum_file */
void l_readers_open(lua_State *L); /* l_readers.c: miles.io.read_png, read_audio, ... */
void l_miles_open(lua_State *L); /* l_miles.c: miles.decide, miles.metrics */
void l_cache_alloc_open(lua_State *L); /* l_cache_alloc.c: miles._cache_allocator (specs) */
void l_signal_open(lua_State *L); /* l_signal.c: miles.signal.stft, mel_spectrogram, mfcc, ... */
void l_cuda_graph_open(lua_State *L); /* l_cuda_graph.c: CUDA graph capture and replay */

#endif
