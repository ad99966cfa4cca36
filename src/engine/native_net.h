/* The native network runtime: a model_file run layer by layer on XNNPACK operators and our AVX2+FMA GEMM
 * (gemm.h), dwconv.h and fused.h. network.h dispatches here or to dnnl_net.h; the contracts are network.h's.
 *
 * Weights are packed once, by network_create. What depends on the input shape (batch, height, width) --
 * each activation's size and place in one arena -- is a plan, built on first use; the network keeps a
 * few (NETWORK_MAX_RUNTIMES), evicted least-recently-used: imagenet mode only ever needs (n, 224, 224);
 * reference mode sees the sizes of the images themselves. network.c says why it no longer uses an
 * XNNPACK subgraph. A network is used by one thread at a time; its own threads are internal. */
#ifndef IMGCLS_ENGINE_NATIVE_NET_H
#define IMGCLS_ENGINE_NATIVE_NET_H

#include "common/error.h"
#include "engine/model_file.h"

#include <stddef.h>
#include <stdint.h>

#include "engine/network.h"

typedef struct native_net native_net;

/* Prepares to run m (which must outlive the network) on `threads` threads (1 = the caller's thread
 * only): creates every layer's operator and packs its weights.
 * Builds no plan yet. Returns 0, IMGCLS_EBACKEND if XNNPACK cannot start on this CPU or refuses a
 * layer, or IMGCLS_ENOMEM. */
int native_net_create(const model_file *m, unsigned threads, native_net **out, imgcls_errbuf *eb);
void native_net_destroy(native_net *n); /* accepts NULL */

/* Every shape passed below is one network.c has checked (batch 1..NETWORK_MAX_BATCH, sides 32..16384).
 *
 * Builds (or finds) the plan for this shape now, so that the first run does not pay for it. */
int native_net_prepare(native_net *n, size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb);

/* The bytes of activations and scratch a plan for this shape allocates, worked out without allocating
 * them (the engine's memory limit). Returns 0, or IMGCLS_EINVAL for a shape the graph cannot take. */
int native_net_plan_bytes(const native_net *n, size_t batch, uint32_t h, uint32_t w, size_t *bytes,
                          imgcls_errbuf *eb);

/* Frees every cached plan over max_bytes, so that one large image's activations do not stay allocated
 * after it has been answered. */
void native_net_trim(native_net *n, size_t max_bytes);

/* Runs a batch: input is batch x h x w x 3 floats (NHWC) with XNN_EXTRA_BYTES of slack after it;
 * logits receives batch x num_classes floats. Returns 0, IMGCLS_EINVAL for a shape the graph cannot
 * take, IMGCLS_ENOMEM (a new shape's activations), or IMGCLS_EBACKEND. */
int native_net_run(native_net *n, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                   imgcls_errbuf *eb);

#endif
