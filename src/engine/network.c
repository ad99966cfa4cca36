/* The network (network.h): oneDNN (dnnl_net.h), with the checks common to every call.
 *
 * Why oneDNN alone. The engine also had its own runtime: XNNPACK operators plus hand-written AVX2+FMA
 * kernels (packed GEMM, depthwise 3x3, fused inverted-residual blocks). The rule was to keep a
 * hand-written kernel only where it beats oneDNN on the same machine in the same run, and it never did:
 * - Intel Xeon with AVX-512 and AMX, 1 thread (the probe, ../shared/probes/onednn): oneDNN fp32 4.97 ms
 *   per image against those kernels' 7.94, and 7.23 with oneDNN capped to AVX2;
 * - AMD EPYC (Zen 3), AVX2 only, 2 vCPUs, interleaved medians: 2026-12-02 (`bench/bench.py --only
 *   network --rounds 7 --iters 40`), 1 thread oneDNN 8.64 ms against 9.13, 2 threads 4.83 against
 *   5.33; `make bench` of 2026-12-03, 8.21 against 8.83 and 4.73 against 5.14.
 * So they were deleted (`git log -- src/engine/native_net.c` has them), and Debian's XNNPACK with them,
 * which nothing else used. */
#include "engine/network.h"

#include "common/log.h"
#include "engine/dnnl_net.h"

#include <stdlib.h>
#include <string.h>

struct network {
    network_precision prec; /* the one it runs */
    unsigned threads;
    dnnl_net *dnnl;
};

static const char *const precision_names[] = {"fp32", "bf16", "int8"};

int network_precision_parse(const char *s, network_precision *out)
{
    for (size_t i = 0; s && i < sizeof precision_names / sizeof *precision_names; i++)
        if (!strcmp(s, precision_names[i])) {
            *out = (network_precision)i;
            return 0;
        }
    return IMGCLS_EINVAL;
}

const char *network_precision_name(network_precision p)
{
    return (size_t)p < sizeof precision_names / sizeof *precision_names ? precision_names[p] : "?";
}

int network_create(const model_file *m, unsigned threads, network_precision prec, network **out,
                   imgcls_errbuf *eb)
{
    *out = NULL;
    if (prec == NETWORK_INT8 && !m->ranges)
        return imgcls_fail(eb, IMGCLS_EINVAL, "precision int8 needs a weight file with int8 calibration, and this "
                           "one has none (tools/model/build_models.py writes it)");
    if (prec == NETWORK_BF16 && !dnnl_net_bf16_fast()) {
        /* oneDNN's bf16 without AMX ran slower than its fp32 (../shared/probes/onednn): not worth rounding */
        log_event("warn", "engine", "bf16_unavailable precision=fp32 isa=%s reason=\"bf16 needs AMX "
                  "(avx512_core_amx), which this CPU does not have; running fp32\"", dnnl_net_isa());
        prec = NETWORK_FP32;
    }
    network *n = calloc(1, sizeof *n);
    if (!n)
        return IMGCLS_ENOMEM;
    n->threads = threads ? threads : 1;
    n->prec = prec;
    imgcls_errbuf deb = {{0}};
    int rc = dnnl_net_create(m, n->threads, prec, &n->dnnl, &deb);
    if (rc) {
        rc = imgcls_fail(eb, rc == IMGCLS_EUNSUPPORTED ? IMGCLS_EBACKEND : rc, "%s",
                         deb.msg[0] ? deb.msg : imgcls_strerror(rc));
        free(n);
        return rc;
    }
    *out = n;
    return 0;
}

void network_destroy(network *n)
{
    if (!n)
        return;
    dnnl_net_destroy(n->dnnl);
    free(n);
}

void network_get_info(const network *n, network_info *out)
{
    out->runtime = "onednn";
    out->isa = dnnl_net_isa();
    out->precision = network_precision_name(n->prec);
    out->threads = n->threads;
}

/* The shapes the network takes: batch 1..NETWORK_MAX_BATCH, sides 32..16384. */
static int shape_ok(size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb)
{
    if (batch == 0 || batch > NETWORK_MAX_BATCH || h < 32 || w < 32 || h > 16384 || w > 16384)
        return imgcls_fail(eb, IMGCLS_EINVAL, "cannot run a batch of %zu images of %ux%u", batch, w, h);
    return 0;
}

int network_prepare(network *n, size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb)
{
    int rc = shape_ok(batch, h, w, eb);
    if (rc)
        return rc;
    return dnnl_net_prepare(n->dnnl, batch, h, w, eb);
}

int network_plan_bytes(const network *n, size_t batch, uint32_t h, uint32_t w, size_t *bytes, imgcls_errbuf *eb)
{
    *bytes = 0;
    int rc = shape_ok(batch, h, w, eb);
    if (rc)
        return rc;
    return dnnl_net_plan_bytes(n->dnnl, batch, h, w, bytes, eb);
}

void network_trim(network *n, size_t max_bytes)
{
    dnnl_net_trim(n->dnnl, max_bytes);
}

int network_run(network *n, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                imgcls_errbuf *eb)
{
    int rc = shape_ok(batch, h, w, eb);
    if (rc)
        return rc;
    return dnnl_net_run(n->dnnl, input, batch, h, w, logits, eb);
}
