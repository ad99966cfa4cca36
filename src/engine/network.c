/* The network (network.h): dispatch to oneDNN (dnnl_net.h) or to the native kernels (native_net.h).
 *
 * The auto rule: oneDNN on every CPU. It reads no CPU model, only what oneDNN reports, and oneDNN was
 * faster than our kernels wherever it was measured:
 * - Intel Xeon with AVX-512 and AMX, 1 thread (the probe, ../shared/probes/onednn): oneDNN fp32 4.97 ms
 *   per image against the engine's 7.94;
 * - AMD EPYC (Zen 3), AVX2 only, 2 vCPUs, `bench/bench.py --only network --rounds 7 --iters 40`,
 *   2026-12-02, interleaved, medians: 1 thread oneDNN (jit_1x1:avx2, jit_dw:avx2) 8.64 ms, with
 *   ONEDNN_MAX_CPU_ISA=AVX2 8.52, native 9.13, ONNX Runtime 9.91; 2 threads 4.83 / 4.80 / 5.33 / 5.36;
 * - the same machine, `make bench` of 2026-12-03: 1 thread oneDNN 8.21 ms, native 8.83; 2 threads 4.73,
 *   5.14.
 * So the native kernels would be kept for auto only on an AVX2 CPU where they measure faster, and none has.
 * The native runtime stays selectable (--runtime native, fp32 only) and is the fallback for an fp32 graph
 * oneDNN refuses; deleting it (and XNNPACK with it) is issue 8's open step. */
#include "engine/network.h"

#include "common/log.h"
#include "engine/dnnl_net.h"
#include "engine/gemm.h"
#include "engine/native_net.h"

#include <stdlib.h>
#include <string.h>

struct network {
    network_runtime rt; /* ONEDNN or NATIVE, never AUTO */
    network_precision prec; /* the one it runs */
    unsigned threads;
    dnnl_net *dnnl;
    native_net *native;
};

int network_runtime_parse(const char *s, network_runtime *out)
{
    static const char *const names[] = {"auto", "onednn", "native"};
    for (size_t i = 0; s && i < sizeof names / sizeof *names; i++)
        if (!strcmp(s, names[i])) {
            *out = (network_runtime)i;
            return 0;
        }
    return IMGCLS_EINVAL;
}

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

/* See the rule at the top of this file. */
static network_runtime auto_runtime(void)
{
    return NETWORK_RUNTIME_ONEDNN;
}

int network_create(const model_file *m, unsigned threads, network_runtime rt, network_precision prec,
                   network **out, imgcls_errbuf *eb)
{
    int rc = 0;
    *out = NULL;
    rt = rt == NETWORK_RUNTIME_AUTO ? auto_runtime() : rt;
    if (prec != NETWORK_FP32 && rt == NETWORK_RUNTIME_NATIVE)
        return imgcls_fail(eb, IMGCLS_EINVAL, "precision %s needs the onednn runtime (native runs fp32 only)",
                           network_precision_name(prec));
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
    n->rt = rt;
    n->prec = prec;
    if (n->rt == NETWORK_RUNTIME_ONEDNN) {
        imgcls_errbuf deb = {{0}};
        rc = dnnl_net_create(m, n->threads, prec, &n->dnnl, &deb);
        if (rc == IMGCLS_EUNSUPPORTED && prec == NETWORK_FP32) {
            /* The whole network, not a mix: one runtime's layouts and threads end to end. */
            log_event("warn", "engine", "onednn_fallback runtime=native reason=\"%s\"", deb.msg);
            n->rt = NETWORK_RUNTIME_NATIVE;
            rc = 0;
        } else if (rc) {
            rc = imgcls_fail(eb, rc, "%s", deb.msg[0] ? deb.msg : imgcls_strerror(rc));
        }
    }
    if (!rc && n->rt == NETWORK_RUNTIME_NATIVE)
        rc = native_net_create(m, n->threads, &n->native, eb);
    if (rc) {
        network_destroy(n);
        n = NULL;
    }
    *out = n;
    return rc;
}

void network_destroy(network *n)
{
    if (!n)
        return;
    dnnl_net_destroy(n->dnnl);
    native_net_destroy(n->native);
    free(n);
}

void network_get_info(const network *n, network_info *out)
{
    int dnnl = n->rt == NETWORK_RUNTIME_ONEDNN;
    out->runtime = dnnl ? "onednn" : "native";
    out->isa = dnnl ? dnnl_net_isa() : gemm_available() ? "avx2-native" : "scalar-native";
    out->precision = network_precision_name(n->prec);
    out->threads = n->threads;
}

/* The shapes either runtime takes, checked here once for both: batch 1..NETWORK_MAX_BATCH, sides 32..16384. */
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
    return n->dnnl ? dnnl_net_prepare(n->dnnl, batch, h, w, eb) : native_net_prepare(n->native, batch, h, w, eb);
}

int network_plan_bytes(const network *n, size_t batch, uint32_t h, uint32_t w, size_t *bytes, imgcls_errbuf *eb)
{
    *bytes = 0;
    int rc = shape_ok(batch, h, w, eb);
    if (rc)
        return rc;
    return n->dnnl ? dnnl_net_plan_bytes(n->dnnl, batch, h, w, bytes, eb)
                   : native_net_plan_bytes(n->native, batch, h, w, bytes, eb);
}

void network_trim(network *n, size_t max_bytes)
{
    if (n->dnnl)
        dnnl_net_trim(n->dnnl, max_bytes);
    else
        native_net_trim(n->native, max_bytes);
}

int network_run(network *n, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                imgcls_errbuf *eb)
{
    int rc = shape_ok(batch, h, w, eb);
    if (rc)
        return rc;
    return n->dnnl ? dnnl_net_run(n->dnnl, input, batch, h, w, logits, eb)
                   : native_net_run(n->native, input, batch, h, w, logits, eb);
}
