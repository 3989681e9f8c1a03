/* bf16 autocast, as PyTorch's torch.autocast(dtype=torch.bfloat16): while it is
 * on, the ops that tensor cores speed up (conv2d, matmul, linear) run in
 * bfloat16, their float32 operands cast down, and the ops that need float32's
 * range and precision (softmax, log-softmax, nll, binary cross-entropy with
 * logits, mse) take their bfloat16 inputs cast up. Every other op runs in its inputs'
 * dtype. The casts are op_to_dtype's, so a float32 weight gets a float32
 * gradient: the master weights stay float32. One switch for every device. */
#include "internal.h"

static bool autocast_on = false;

bool op_autocast(void)
{
    return autocast_on;
}

void op_set_autocast(bool on)
{
    autocast_on = on;
}

bool autocast_casts(int n, tensor *const *ts, dtype_t from)
{
    if (!autocast_on)
        return false;
    for (int i = 0; i < n; i++)
        if (ts[i] && ts[i]->dtype == from)
            return true;
    return false;
}

int autocast_all(int n, tensor *const *ts, tensor **out, dtype_t from, dtype_t to,
                 bool channels_last)
{
    for (int i = 0; i < n; i++) {
        out[i] = ts[i] && ts[i]->dtype == from ? op_to_dtype_in(ts[i], to, channels_last)
                                               : keep(ts[i]);
        if (ts[i] && !out[i]) {
            autocast_release(i, out);
            return -1;
        }
    }
    return 0;
}

void autocast_release(int n, tensor **ts)
{
    for (int i = 0; i < n; i++)
        tensor_decref(ts[i]);
}
