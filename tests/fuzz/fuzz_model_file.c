/* The weight file (src/engine/model_file.h): model_file_parse, the pure half of model_file_open. The
 * engine trusts what it accepts (tensor pointers into the mapping, value ids, shapes), so on success
 * every one of those is checked here against the input. An input that parses is also written to a
 * file and opened with model_file_open, the mapping path the binary takes, which must agree. */
#include "fuzz_util.h"

#include "engine/model_file.h"

#include <string.h>
#include <unistd.h>

static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    dir = fuzz_tmp_dir("model");
    return 0;
}

static void check_tensor(const model_tensor *t, const model_file *m, const uint8_t *data, size_t size)
{
    FUZZ_CHECK(t >= m->tensors && t < m->tensors + m->ntensors);
    const uint8_t *p = (const uint8_t *)t->data;
    FUZZ_CHECK(p >= data && t->count <= (size_t)(data + size - p) / sizeof(float));
    size_t count = 1;
    for (size_t d = 0; d < t->ndims; d++)
        count *= t->dims[d];
    FUZZ_CHECK(t->ndims >= 1 && t->ndims <= 4 && count == t->count);
}

static void check_model(const model_file *m, const uint8_t *data, size_t size)
{
    FUZZ_CHECK(m->num_classes >= 1 && m->num_classes <= MODEL_MAX_CLASSES && m->labels != NULL);
    for (size_t i = 0; i < m->num_classes; i++)
        FUZZ_CHECK(m->labels[i] != NULL && strlen(m->labels[i]) < size);
    FUZZ_CHECK(m->nlayers >= 1 && m->nlayers <= MODEL_MAX_LAYERS);
    FUZZ_CHECK(m->output >= 1 && m->output < m->num_values);
    for (size_t i = 0; i < m->ntensors; i++)
        check_tensor(&m->tensors[i], m, data, size);
    for (size_t i = 0; i < m->nlayers; i++) {
        const model_layer *l = &m->layers[i];
        FUZZ_CHECK(l->input[0] < m->num_values && l->output < m->num_values && l->output != 0);
        if (l->op == MODEL_ADD)
            FUZZ_CHECK(l->input[1] < m->num_values);
        if (l->op == MODEL_CONV2D || l->op == MODEL_LINEAR) {
            FUZZ_CHECK(l->weight != NULL && l->bias != NULL);
            check_tensor(l->weight, m, data, size);
            check_tensor(l->bias, m, data, size);
            FUZZ_CHECK(l->bias->count == l->out_channels);
        }
        if (l->op == MODEL_CONV2D)
            FUZZ_CHECK(l->groups >= 1 && l->stride[0] >= 1 && l->stride[1] >= 1 && l->kernel[0] >= 1 &&
                       l->kernel[1] >= 1 && l->dilation[0] >= 1 && l->dilation[1] >= 1);
    }
}

/* The same bytes through a file and mmap. */
static void check_open(const uint8_t *data, size_t size, const model_file *parsed)
{
    char path[128];
    snprintf(path, sizeof path, "%s/model.imgw", dir);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);
    model_file *m = NULL;
    imgcls_errbuf eb = {{0}};
    FUZZ_CHECK(model_file_open(path, &m, &eb) == 0);
    FUZZ_CHECK(m->nlayers == parsed->nlayers && m->ntensors == parsed->ntensors &&
               m->num_classes == parsed->num_classes && m->output == parsed->output);
    model_file_close(m);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The file is mapped page-aligned, so its tensors are float-aligned; libFuzzer's copy is malloc'ed,
     * which is aligned enough too (16 bytes), but the copy below makes the size exact for ASan. */
    uint8_t *copy = malloc(size ? size : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    model_file m;
    imgcls_errbuf eb = {{0}};
    int rc = model_file_parse(copy, size, &m, &eb);
    if (rc) {
        FUZZ_CHECK(rc == IMGCLS_ECORRUPT || rc == IMGCLS_ENOMEM);
        FUZZ_CHECK(m.layers == NULL && m.tensors == NULL && m.labels == NULL && m.nlayers == 0);
    } else {
        check_model(&m, copy, size);
        check_open(copy, size, &m);
        model_file_release(&m);
    }
    free(copy);
    return 0;
}
