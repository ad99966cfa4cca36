/* The network: a model_file run on oneDNN (dnnl_net.h), whose JIT kernels suit whatever ISA the CPU has,
 * from AVX2 to AMX. This file is the engine's view of it; network.c checks shapes and precisions, and
 * says why there is no other runtime.
 *
 * Weights are reordered once, by network_create. What depends on the input shape (batch, height,
 * width) -- the primitives, each activation's size and place in one arena -- is a plan, built on first
 * use; the network keeps a few (NETWORK_MAX_PLANS), evicted least-recently-used: imagenet mode only ever
 * needs (n, 224, 224); reference mode sees the sizes of the images themselves. A network is used by one
 * thread at a time; its own threads are internal. */
#ifndef IMGCLS_ENGINE_NETWORK_H
#define IMGCLS_ENGINE_NETWORK_H

#include "common/error.h"
#include "engine/model_file.h"

#include <stddef.h>
#include <stdint.h>

#define NETWORK_MAX_PLANS 4
#define NETWORK_MAX_BATCH 64

/* The arithmetic the network runs in (docs/engine.md, "Precision"):
 * - fp32: the default, exact (matches ONNX Runtime to about 1e-5);
 * - bf16: bfloat16 activations and weights, fp32 accumulation; only where oneDNN has AMX for it, since
 *   without AMX its bf16 kernels are slower than fp32: elsewhere the network runs fp32 and says so;
 * - int8: u8 (after a ReLU) or s8 activations, a scale each from the weight file's calibration, s8
 *   weights, one scale per output channel.
 * In both, the classifier and the layers the calibration names (fp32_layers) stay fp32 (dnnl_net.c). */
typedef enum network_precision { NETWORK_FP32, NETWORK_BF16, NETWORK_INT8 } network_precision;

/* "fp32", "bf16" or "int8" -> *out. Returns 0, or IMGCLS_EINVAL for anything else (NULL included). */
int network_precision_parse(const char *s, network_precision *out);
const char *network_precision_name(network_precision p);

/* What a network runs on, for logs and --json: runtime "onednn" (the answers' engine string keeps the
 * field); isa, the ISA oneDNN's JIT uses ("avx2", "avx512_core", ...); precision, the one it runs
 * ("fp32", "bf16", "int8": bf16 asked for on a CPU without AMX runs, and says, "fp32"). The strings are
 * static. */
typedef struct network_info {
    const char *runtime, *isa, *precision;
    unsigned threads;
} network_info;

typedef struct network network;

/* Prepares to run m (which must outlive the network) on `threads` threads (1 = the caller's thread
 * only) in precision prec: creates every layer's primitive and reorders its weights. bf16 on a CPU
 * without AMX runs fp32, and says so (log_event, "engine"). Returns 0; IMGCLS_EINVAL for int8 with a
 * weight file that carries no calibration (permanent: a configuration error); IMGCLS_EBACKEND if
 * oneDNN cannot start on this CPU or refuses a layer (eb names it); or IMGCLS_ENOMEM. */
int network_create(const model_file *m, unsigned threads, network_precision prec, network **out,
                   imgcls_errbuf *eb);
void network_destroy(network *n); /* accepts NULL */

void network_get_info(const network *n, network_info *out);

/* Builds (or finds) the plan for this shape now, so that the first run does not pay for it. */
int network_prepare(network *n, size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb);

/* The bytes of activations and scratch a plan for this shape allocates, worked out without allocating
 * them (the engine's memory limit; an estimate, dnnl_net.h). Returns 0, or IMGCLS_EINVAL for
 * a shape the network cannot take. */
int network_plan_bytes(const network *n, size_t batch, uint32_t h, uint32_t w, size_t *bytes, imgcls_errbuf *eb);

/* Frees every cached plan over max_bytes, so that one large image's activations do not stay allocated
 * after it has been answered. */
void network_trim(network *n, size_t max_bytes);

/* Runs a batch: input is batch x h x w x 3 floats (NHWC); logits receives batch x num_classes floats.
 * Returns 0, IMGCLS_EINVAL for a shape the network cannot take (batch 0 or > NETWORK_MAX_BATCH, a side
 * under 32), IMGCLS_ENOMEM (a new shape's activations), or IMGCLS_EBACKEND. */
int network_run(network *n, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                imgcls_errbuf *eb);

#endif
