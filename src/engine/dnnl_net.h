/* The network on oneDNN (Debian 12's libdnnl 2.6, C API, GNU OpenMP runtime).
 *
 * Every line that knows oneDNN's API lives in dnnl_net.c, so that a move to oneDNN 3.x (which removed
 * the operation descriptors used here) touches that one file. network.c is the engine's side of it;
 * this interface mirrors network.h's.
 *
 * Each convolution (depthwise ones through groups) and the linear layer (a 1x1 convolution: the model
 * file's linear layer is per pixel) is a oneDNN convolution whose layouts oneDNN chooses; ReLU and ReLU6
 * are eltwise post-ops, and a residual add right after a convolution is a sum post-op that writes in
 * place into the residual's buffer. Weights are reordered once, by dnnl_net_create. Primitives and the
 * activation arena are made once per input shape (a plan, NETWORK_MAX_PLANS kept, least recently
 * used out). A dnnl_net is used by one thread at a time. */
#ifndef IMGCLS_ENGINE_DNNL_NET_H
#define IMGCLS_ENGINE_DNNL_NET_H

#include "common/error.h"
#include "engine/model_file.h"
#include "engine/network.h"

#include <stddef.h>
#include <stdint.h>

typedef struct dnnl_net dnnl_net;

/* The ISA oneDNN's JIT uses on this CPU (after ONEDNN_MAX_CPU_ISA), as a short name: "avx2",
 * "avx512_core", "avx512_core_amx", ... */
const char *dnnl_net_isa(void);

/* Whether oneDNN has fast bf16 kernels on this CPU (AMX; network.h says why that is the test). */
int dnnl_net_bf16_fast(void);

/* Prepares m (which must outlive the net) to run on `threads` OpenMP threads in precision prec
 * (network.h; int8 needs m->ranges), and builds the plan for one 224x224 image, which reorders (and
 * for int8 quantizes) the weights. Returns 0; IMGCLS_EUNSUPPORTED with eb naming the layer when oneDNN
 * refuses a layer; IMGCLS_ENOMEM; or IMGCLS_EBACKEND.
 * On error *out is NULL. */
int dnnl_net_create(const model_file *m, unsigned threads, network_precision prec, dnnl_net **out,
                    imgcls_errbuf *eb);
void dnnl_net_destroy(dnnl_net *n); /* accepts NULL */

/* As network_prepare, network_plan_bytes, network_trim and network_run (network.h), on shapes network.c
 * has checked already (batch 1..NETWORK_MAX_BATCH, sides 32..16384). plan_bytes builds
 * no primitive, so it estimates: every value in plain fp32 with channels rounded up to 16 (oneDNN's
 * widest blocking), first fit. */
int dnnl_net_prepare(dnnl_net *n, size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb);
int dnnl_net_plan_bytes(const dnnl_net *n, size_t batch, uint32_t h, uint32_t w, size_t *bytes,
                        imgcls_errbuf *eb);
void dnnl_net_trim(dnnl_net *n, size_t max_bytes);
int dnnl_net_run(dnnl_net *n, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                 imgcls_errbuf *eb);

#endif
