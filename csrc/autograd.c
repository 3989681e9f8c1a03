#include "autograd.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/cuda_backend.h"
#include "error.h"
#include "ops.h"

static _Thread_local bool grad_off;

bool ag_enabled(void)
{
    return !grad_off;
}

bool ag_set_enabled(bool on)
{
    bool was = !grad_off;
    grad_off = !on;
    return was;
}

bool ag_needs(int n, tensor *const *inputs)
{
    if (grad_off)
        return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad)
            return true;
    return false;
}

ag_node *ag_node_new(const char *name, ag_backward_fn fn, int n, tensor *const *inputs)
{
    ag_node *node = calloc(1, sizeof *node);
    ag_edge *next = calloc((size_t)(n > 0 ? n : 1), sizeof *next);
    if (!node || !next) {
        free(node);
        free(next);
        err_set("%s: out of memory recording the autograd graph", name);
        return NULL;
    }
    node->refcount = 1;
    node->name = name;
    node->backward = fn;
    node->n_next = n;
    node->next = next;
    for (int i = 0; i < n; i++) {
        tensor *t = inputs[i];
        if (!t)
            continue;
        next[i].ndim = t->ndim;
        memcpy(next[i].shape, t->shape, sizeof t->shape);
        next[i].dtype = t->dtype;
        if (!t->requires_grad)
            continue;
        if (t->grad_fn) {
            next[i].node = t->grad_fn;
            t->grad_fn->refcount++;
        } else {
            next[i].leaf = tensor_incref(t);
        }
    }
    return node;
}

static void release_saved(ag_node *n)
{
    for (int i = 0; i < n->n_saved; i++) {
        tensor_decref(n->saved[i]);
        n->saved[i] = NULL;
    }
}

/* Nodes can form long chains (a deep network's graph); free them iteratively so
 * that dropping the last reference never recurses deeply. */
void ag_node_decref(ag_node *n)
{
    ag_node **stack = NULL;
    size_t len = 0, cap = 0;
    while (n) {
        if (--n->refcount == 0) {
            for (int i = 0; i < n->n_next; i++) {
                tensor_decref(n->next[i].leaf);
                ag_node *c = n->next[i].node;
                if (!c)
                    continue;
                if (len == cap) {
                    size_t ncap = cap ? cap * 2 : 16;
                    ag_node **ns = realloc(stack, ncap * sizeof *ns);
                    if (!ns) { /* fall back to recursion rather than leak */
                        ag_node_decref(c);
                        continue;
                    }
                    stack = ns;
                    cap = ncap;
                }
                stack[len++] = c;
            }
            release_saved(n);
            tensor_decref(n->grad);
            free(n->next);
            free(n);
        }
        n = len ? stack[--len] : NULL;
    }
    free(stack);
}

int ag_save(ag_node *n, tensor *t)
{
    if (n->n_saved >= AG_MAX_SAVED)
        return err_set("%s: too many saved tensors", n->name);
    /* Save a plain alias (no grad_fn): holding the producing node here would make
     * a reference cycle when the saved tensor is the node's own output. */
    tensor *alias = tensor_as_strided(t, t->ndim, t->shape, t->stride, t->offset);
    if (!alias)
        return -1;
    n->saved_version[n->n_saved] = t->st->version;
    n->saved[n->n_saved++] = alias;
    return 0;
}

/* Only backward functions read saved tensors, and the engine prefixes their
 * errors with the node's name; so the messages here do not repeat it. */
tensor *ag_saved(ag_node *n, int i)
{
    if (n->released) {
        err_set("trying to backward through the graph a second time; pass "
                "retain_graph = true to the first backward call");
        return NULL;
    }
    tensor *t = n->saved[i];
    if (t->st->version != n->saved_version[i]) {
        err_set("a tensor needed for the gradient was modified in place after the "
                "op used it");
        return NULL;
    }
    return t;
}

void ag_attach(tensor *out, ag_node *n)
{
    ag_node_decref(out->grad_fn);
    out->grad_fn = n;
    out->requires_grad = true;
}

tensor *ag_reduce_to_input(ag_node *n, int i, tensor *g)
{
    const ag_edge *e = &n->next[i];
    return op_sum_to_shape(g, e->ndim, e->shape);
}

/* --- the engine --- */

typedef struct {
    ag_node **v;
    size_t len, cap;
} node_vec;

static int vec_push(node_vec *s, ag_node *n)
{
    if (s->len == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        ag_node **nv = realloc(s->v, ncap * sizeof *nv);
        if (!nv)
            return err_set("backward: out of memory");
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->len++] = n;
    return 0;
}

/* Count, for every node reachable from root, how many edges point at it. The
 * traversal is iterative; `pending` doubles as the visited mark (visited nodes
 * have pending >= 1 after the root's own count is discounted). */
static int count_dependencies(ag_node *root, node_vec *all)
{
    node_vec stack = {0};
    int rc = vec_push(&stack, root);
    root->pending = 0;
    if (rc == 0)
        rc = vec_push(all, root);
    while (rc == 0 && stack.len) {
        ag_node *n = stack.v[--stack.len];
        for (int i = 0; i < n->n_next && rc == 0; i++) {
            ag_node *c = n->next[i].node;
            if (!c)
                continue;
            if (c->pending++ == 0 && c != root) {
                rc = vec_push(&stack, c);
                if (rc == 0)
                    rc = vec_push(all, c);
            }
        }
    }
    free(stack.v);
    return rc;
}

/* target += g (target may be NULL: it then takes g). */
static int accumulate(tensor **target, tensor *g)
{
    if (!*target) {
        *target = tensor_incref(g);
        return 0;
    }
    tensor *sum = op_binary(BIN_ADD, *target, g);
    if (!sum)
        return -1;
    tensor_decref(*target);
    *target = sum;
    return 0;
}

/* Do a and b (same shape) step through memory alike? */
static bool laid_out_alike(const tensor *a, const tensor *b)
{
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] > 1 && a->stride[i] != b->stride[i])
            return false;
    return true;
}

static int accumulate_leaf(tensor *leaf, tensor *g)
{
    if (g->dtype != leaf->dtype || !tensor_same_shape(g, leaf)) {
        char b1[128], b2[128];
        return err_set("backward: gradient of shape %s (%s) for a leaf of shape %s (%s)",
                       tensor_shape_str(g, b1, sizeof b1), dtype_name(g->dtype),
                       tensor_shape_str(leaf, b2, sizeof b2), dtype_name(leaf->dtype));
    }
    if (!leaf->grad) {
        /* Own the gradient's memory, so later in-place updates of .grad never
         * touch a tensor the graph or the user still holds: g is kept only when
         * nothing else refers to it or to its storage (a view of the user's
         * gradient, such as reshape's backward returns, shares the storage).
         * And lay it out as the leaf is (as PyTorch does): a linear layer's weight
         * gradient comes transposed from its matmul, and the optimizers (a CUDA
         * graph's above all) want it contiguous like the weight. */
        bool sole = g->refcount == 1 && g->st->refcount == 1 && tensor_is_dense(g) &&
                    laid_out_alike(g, leaf);
        tensor *c = sole ? tensor_incref(g) : tensor_empty_like(leaf, g->dtype);
        if (!c || (!sole && tensor_copy_into(c, g) != 0)) {
            tensor_decref(c);
            return -1;
        }
        leaf->grad = c;
        return 0;
    }
    return accumulate(&leaf->grad, g);
}

/* --- profiling --- */

static bool prof_on, prof_wait;
static ag_profile_entry prof[AG_PROFILE_KINDS];
static int n_prof;

void ag_profile(bool on, bool wait)
{
    prof_on = on;
    prof_wait = wait;
    if (on)
        n_prof = 0;
}

int ag_profile_results(const ag_profile_entry **out)
{
    *out = prof;
    return n_prof;
}

/* The time now, after t's GPU (if any) is done with what is queued (unless the
 * profile times the host alone). */
static double settled_now(const tensor *t)
{
    device d = tensor_device(t);
    if (d.type == DEV_CUDA && prof_wait)
        cuda_synchronize(d.index); /* (an error shows again at the next wait) */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void prof_add(const char *name, double seconds)
{
    int i = 0;
    while (i < n_prof && strcmp(prof[i].name, name) != 0)
        i++;
    if (i == n_prof) {
        if (n_prof == AG_PROFILE_KINDS)
            return; /* (more kinds than any model has) */
        prof[n_prof++] = (ag_profile_entry){name, 0, 0};
    }
    prof[i].seconds += seconds;
    prof[i].calls++;
}

static int run_node(ag_node *n, bool retain)
{
    tensor *gin_small[8] = {0};
    tensor **gin = n->n_next <= 8 ? gin_small : calloc((size_t)n->n_next, sizeof *gin);
    if (!gin)
        return err_set("backward: out of memory");
    double t0 = prof_on ? settled_now(n->grad) : 0;
    int rc = n->backward(n, n->grad, gin);
    if (prof_on)
        prof_add(n->name, settled_now(n->grad) - t0);
    if (rc != 0)
        err_prefix(n->name);
    for (int i = 0; i < n->n_next; i++) {
        tensor *g = gin[i];
        if (!g)
            continue;
        if (rc == 0) {
            if (n->next[i].node)
                rc = accumulate(&n->next[i].node->grad, g);
            else if (n->next[i].leaf)
                rc = accumulate_leaf(n->next[i].leaf, g);
        }
        tensor_decref(g);
    }
    if (gin != gin_small)
        free(gin);
    tensor_decref(n->grad);
    n->grad = NULL;
    if (!retain) {
        release_saved(n);
        n->released = true;
    }
    return rc;
}

int ag_backward(tensor *root, tensor *grad, bool retain_graph)
{
    if (!root->requires_grad)
        return err_set("backward: the tensor does not require grad and has no grad_fn");
    tensor *g;
    if (grad) {
        if (!device_eq(tensor_device(grad), tensor_device(root))) {
            char b1[16], b2[16];
            return err_set("backward: the gradient is on %s but the tensor is on %s",
                           device_str(tensor_device(grad), b1), device_str(tensor_device(root), b2));
        }
        if (!tensor_same_shape(grad, root)) {
            char b1[128], b2[128];
            return err_set("backward: gradient of shape %s for a tensor of shape %s",
                           tensor_shape_str(grad, b1, sizeof b1),
                           tensor_shape_str(root, b2, sizeof b2));
        }
        g = grad->dtype == root->dtype ? tensor_incref(grad) : tensor_copy_as(grad, root->dtype);
    } else {
        if (tensor_numel(root) != 1) {
            char b[128];
            return err_set("backward: the gradient can be implied only for a tensor of "
                           "one element, not of shape %s; pass a gradient",
                           tensor_shape_str(root, b, sizeof b));
        }
        g = tensor_full(root->dtype, root->ndim, root->shape, 1.0, tensor_device(root));
    }
    if (!g)
        return -1;
    bool was = ag_set_enabled(false);
    int rc;
    if (!root->grad_fn) {
        rc = accumulate_leaf(root, g);
        tensor_decref(g);
        ag_set_enabled(was);
        return rc;
    }
    ag_node *top = root->grad_fn;
    node_vec all = {0}, ready = {0};
    rc = count_dependencies(top, &all);
    top->grad = g;
    if (rc == 0)
        rc = vec_push(&ready, top);
    while (rc == 0 && ready.len) {
        ag_node *n = ready.v[--ready.len];
        rc = run_node(n, retain_graph);
        for (int i = 0; i < n->n_next && rc == 0; i++) {
            ag_node *c = n->next[i].node;
            if (c && --c->pending == 0)
                rc = vec_push(&ready, c);
        }
    }
    /* Leave every node clean for a later pass, whatever happened. */
    for (size_t i = 0; i < all.len; i++) {
        all.v[i]->pending = 0;
        tensor_decref(all.v[i]->grad);
        all.v[i]->grad = NULL;
    }
    free(all.v);
    free(ready.v);
    ag_set_enabled(was);
    return rc;
}
