/* Input checks shared by the signal functions (see signal_util.h). */
#include "signal_util.h"

#include "../error.h"

int sig_check_float_cpu(const tensor *t, const char *fn)
{
    device d = tensor_device(t);
    if (d.type != DEV_CPU) {
        char buf[16];
        return err_set("%s: the input is on %s; the signal functions run on the cpu "
                       "(move it with :to(\"cpu\") first)", fn, device_str(d, buf));
    }
    if (t->dtype != DT_F32 && t->dtype != DT_F64)
        return err_set("%s: the input must be float32 or float64, got %s", fn,
                       dtype_name(t->dtype));
    return 0;
}

int sig_check_signal(const tensor *t, int max_ndim, const char *fn)
{
    if (sig_check_float_cpu(t, fn) != 0)
        return -1;
    if (t->ndim < 1 || t->ndim > max_ndim) {
        char buf[96];
        return err_set("%s: expected a signal [T] or a batch [..., T] of at most %d dims, "
                       "got shape %s", fn, max_ndim, tensor_shape_str(t, buf, sizeof buf));
    }
    return 0;
}
