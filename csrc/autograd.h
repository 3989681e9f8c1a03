/* Reverse-mode automatic differentiation: the tape is a graph of nodes, one per op
 * applied to tensors that require gradients. Each non-leaf tensor points at the
 * node that made it; each node points at the nodes (or leaf tensors) of its inputs.
 * backward() walks the graph in reverse topological order. */
#ifndef MILES_AUTOGRAD_H
#define MILES_AUTOGRAD_H

#include "tensor.h"

#define AG_MAX_SAVED 5
#define AG_MAX_ARGS 8

typedef struct ag_node ag_node;

/* Computes the gradient of each input from gout (the gradient of the node's output);
 * stores a new reference in gin[i], or NULL for an input that needs none. Runs with
 * gradient recording off. Returns 0, or -1 with the error set. */
typedef int (*ag_backward_fn)(ag_node *n, tensor *gout, tensor **gin);

typedef struct {
    ag_node *node;   /* the producer of this input, or */
    tensor *leaf;    /* the leaf to accumulate into; both NULL: no gradient needed */
    int ndim;        /* the input's shape and dtype, for reducing broadcast grads */
    int64_t shape[TENSOR_MAX_DIMS];
    dtype_t dtype;
} ag_edge;

struct ag_node {
    int refcount;
    const char *name;
    ag_backward_fn backward;
    int n_next;
    ag_edge *next;
    int n_saved;
    tensor *saved[AG_MAX_SAVED];
    uint64_t saved_version[AG_MAX_SAVED];
    int64_t iarg[AG_MAX_ARGS]; /* op parameters, free for each op to use */
    double darg[AG_MAX_ARGS];
    bool released;             /* saved tensors freed after a backward pass */
    /* engine state during one backward pass */
    tensor *grad;
    int pending;
};

/* Is gradient recording on for this thread? */
bool ag_enabled(void);
/* Turn recording on or off; returns the previous setting. */
bool ag_set_enabled(bool on);

/* Does an op on these inputs need a node (recording on, some input requires grad)? */
bool ag_needs(int n, tensor *const *inputs);

/* A node for an op over n inputs; edges are taken from the inputs. */
ag_node *ag_node_new(const char *name, ag_backward_fn fn, int n, tensor *const *inputs);
void ag_node_decref(ag_node *n);
/* Keep t for backward (checked against in-place changes when used). */
int ag_save(ag_node *n, tensor *t);
/* The i-th saved tensor, or NULL with an error if it was released or modified. */
tensor *ag_saved(ag_node *n, int i);
/* Make node n the producer of out (out then requires grad). Consumes the caller's
 * reference to n. */
void ag_attach(tensor *out, ag_node *n);

/* Back-propagate from root with gradient grad (NULL: root must hold one element and
 * the gradient is 1). Gradients of leaves accumulate into their ->grad. */
int ag_backward(tensor *root, tensor *grad, bool retain_graph);

/* Sum a gradient of a broadcast shape back to the input's shape (edge i of n). */
tensor *ag_reduce_to_input(ag_node *n, int i, tensor *g);

/* Profiling of backward passes (miles.profile): while on, each node's backward
 * is timed, its GPU waited for before and after (so the time is its own work),
 * and summed by node name. Turning it on clears the sums. */
#define AG_PROFILE_KINDS 64
typedef struct {
    const char *name;
    double seconds;
    int64_t calls;
} ag_profile_entry;
/* wait: time each node after its GPU work is done (else the host's time alone). */
void ag_profile(bool on, bool wait);
/* The sums so far: *out points at n entries (valid until the next ag_profile). */
int ag_profile_results(const ag_profile_entry **out);

#endif
