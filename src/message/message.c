/* JSON encoding of the request and response messages (DESIGN.md §3), with jansson.
 *
 * Decoding is strict about every field it knows: a message is outside input (anyone who can write to the
 * queue can send one), and a field that is silently truncated or defaulted would mix up answers. Unknown
 * fields are ignored, though, so that a writer can add an optional field under "v":1 during a rolling
 * upgrade without breaking readers that do not know it yet; an incompatible change bumps "v".
 *
 * Base64 is checked by hand before EVP_DecodeBlock, because EVP_DecodeBlock skips leading and trailing
 * whitespace, accepts non-canonical padding bits, and counts the padding in the length it returns. */
#include "message/message.h"

#include "common/json_buf.h"

#include "queue/queue.h"
#include "store/store.h"

#include <jansson.h>
#include <openssl/evp.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the rules both directions enforce ---- */

bool msg_id_valid(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= MESSAGE_ID_LEN || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == MESSAGE_ID_LEN;
}

/* NULL when the request's id, file and image key keep the rules in message.h, else which is broken. */
static const char *request_problem(const msg_request *r)
{
    if (!msg_id_valid(r->id))
        return "id: not 32 lowercase hex characters";
    if (filename_problem(r->file, strlen(r->file)))
        return "file: not a valid file name";
    if (r->image_key[0]) {
        char claim[STORE_MAX_SYSTEM_KEY];
        store_key_claim(r->id, claim);
        if (strcmp(r->image_key, claim) != 0)
            return "image_key: not this request's claim key";
    }
    return NULL;
}

/* engine becomes a Prometheus label value on the web tier: a whitelist, so it needs no escaping. */
static bool engine_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' || *s == '/' ||
              *s == '-'))
            return false;
    return true;
}

static const char *response_problem(const msg_response *r)
{
    if (!msg_id_valid(r->id))
        return "id: not 32 lowercase hex characters";
    if (!engine_ok(r->engine))
        return "engine: not of [a-z0-9_./-]";
    if (r->file[0] && filename_problem(r->file, strlen(r->file)))
        return "file: not a valid file name";
    return NULL;
}

/* ---- encoding ---- */

/* Serialises o into out, leaving out as it was on failure. */
static int dump(json_t *o, imgcls_buf *out)
{
    return json_buf_dump(o, 0, out);
}

/* A char array field holds a NUL-terminated string of at least min bytes. */
static bool field_ok(const char *s, size_t size, size_t min)
{
    size_t n = strnlen(s, size);
    return n < size && n >= min;
}

/* json_string refuses text that is not UTF-8 (returns NULL), and set_new refuses NULL: both end as -1. */
static int set_str(json_t *o, const char *key, const char *val)
{
    return json_object_set_new(o, key, json_string(val));
}

static int encode_image(json_t *o, const msg_request *r)
{
    if (r->image_len > MESSAGE_INLINE_MAX)
        return IMGCLS_ETOOBIG; /* the caller should have used the input bucket */
    size_t n = 4 * ((r->image_len + 2) / 3);
    char *b64 = malloc(n + 1); /* EVP_EncodeBlock writes no newlines, and a NUL */
    if (!b64)
        return IMGCLS_ENOMEM;
    EVP_EncodeBlock((unsigned char *)b64, r->image, (int)r->image_len);
    int rc = json_object_set_new(o, "image_b64", json_stringn(b64, n)) ? IMGCLS_ENOMEM : 0;
    free(b64);
    return rc;
}

int msg_request_encode(const msg_request *r, imgcls_buf *out)
{
    int rc = 0;
    json_t *o = NULL;
    bool inline_img = r->image != NULL && r->image_len > 0;
    if (!field_ok(r->id, sizeof r->id, 1) || !field_ok(r->file, sizeof r->file, 1) ||
        !field_ok(r->reply_to, sizeof r->reply_to, 1) || !field_ok(r->image_key, sizeof r->image_key, 0) ||
        inline_img == (r->image_key[0] != 0) || request_problem(r)) {
        rc = IMGCLS_EINVAL;
        goto out;
    }
    o = json_object();
    if (!o || json_object_set_new(o, "v", json_integer(MESSAGE_VERSION))) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    if (set_str(o, "id", r->id) || set_str(o, "file", r->file) || set_str(o, "reply_to", r->reply_to)) {
        rc = IMGCLS_EINVAL; /* not UTF-8 */
        goto out;
    }
    if (inline_img)
        rc = encode_image(o, r);
    else
        rc = set_str(o, "image_key", r->image_key) ? IMGCLS_EINVAL : 0;
    if (rc)
        goto out;
    rc = dump(o, out);
out:
    json_decref(o);
    return rc;
}

static json_t *class_json(const msg_class *c)
{
    return json_pack("{s:s, s:I, s:f}", "label", c->label, "index", (json_int_t)c->index, "prob", c->prob);
}

/* The result half of a response: label, index, prob (from top[0]), top, worker, ms. Each value is made
 * right where it is handed to its parent, so that a failure leaks nothing (set_new takes NULL too). */
static int encode_result(json_t *o, const msg_response *r)
{
    if (r->ntop < 1 || r->ntop > MESSAGE_MAX_TOP || !field_ok(r->worker, sizeof r->worker, 0))
        return IMGCLS_EINVAL;
    if (set_str(o, "label", r->top[0].label) ||
        json_object_set_new(o, "index", json_integer((json_int_t)r->top[0].index)) ||
        json_object_set_new(o, "prob", json_real(r->top[0].prob)))
        return IMGCLS_EINVAL; /* bad label, or a probability JSON cannot hold (NaN) */
    json_t *top = json_array();
    if (json_object_set_new(o, "top", top))
        return IMGCLS_ENOMEM;
    for (size_t i = 0; i < r->ntop; i++) {
        if (!field_ok(r->top[i].label, sizeof r->top[i].label, 1) ||
            json_array_append_new(top, class_json(&r->top[i])))
            return IMGCLS_EINVAL;
    }
    const msg_timing *t = &r->ms;
    if (set_str(o, "worker", r->worker) || (r->engine[0] && set_str(o, "engine", r->engine)) ||
        json_object_set_new(o, "ms", json_pack("{s:f, s:f, s:f, s:f, s:f}", "queue", t->queue_ms, "fetch",
                                               t->fetch_ms, "decode", t->decode_ms, "infer", t->infer_ms,
                                               "total", t->total_ms)))
        return IMGCLS_EINVAL;
    return 0;
}

int msg_response_encode(const msg_response *r, imgcls_buf *out)
{
    int rc = 0;
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "v", json_integer(MESSAGE_VERSION))) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    if (!field_ok(r->id, sizeof r->id, 1) || !field_ok(r->file, sizeof r->file, 0) ||
        !field_ok(r->error_code, sizeof r->error_code, 0) ||
        !field_ok(r->error_message, sizeof r->error_message, 0) || !field_ok(r->engine, sizeof r->engine, 0) ||
        response_problem(r) || set_str(o, "id", r->id) ||
        set_str(o, "file", r->file)) {
        rc = IMGCLS_EINVAL;
        goto out;
    }
    if (r->error_code[0]) {
        json_t *e = json_object();
        if (json_object_set_new(o, "error", e) || set_str(e, "code", r->error_code) ||
            set_str(e, "message", r->error_message))
            rc = IMGCLS_EINVAL;
    } else {
        rc = encode_result(o, r);
    }
    if (!rc)
        rc = dump(o, out);
out:
    json_decref(o);
    return rc;
}

/* ---- decoding ---- */

static int corrupt(imgcls_errbuf *eb, const char *field, const char *what)
{
    return imgcls_fail(eb, IMGCLS_ECORRUPT, "message: %s: %s", field, what);
}

/* Parses data into an object with "v":1. */
static int load(const unsigned char *data, size_t len, json_t **root, imgcls_errbuf *eb)
{
    json_error_t je;
    *root = NULL;
    if (len > QUEUE_MAX_BODY)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "message: %zu bytes, over %zu", len, QUEUE_MAX_BODY);
    *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    if (!*root)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "message: not JSON: %s at byte %d", je.text, je.position);
    if (!json_is_object(*root))
        return corrupt(eb, "message", "not an object");
    json_t *v = json_object_get(*root, "v");
    if (!v)
        return corrupt(eb, "v", "missing");
    if (!json_is_integer(v) || json_integer_value(v) != MESSAGE_VERSION)
        return corrupt(eb, "v", "unsupported version (want 1)");
    return 0;
}

/* Copies string field `key` of o into dst, between min and size-1 bytes. name is how errors call it. */
static int get_str(json_t *o, const char *key, const char *name, char *dst, size_t size, size_t min,
                   imgcls_errbuf *eb)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return corrupt(eb, name, "missing");
    if (!json_is_string(v))
        return corrupt(eb, name, "not a string");
    size_t n = json_string_length(v);
    if (n >= size)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "message: %s: longer than %zu bytes", name, size - 1);
    if (n < min)
        return corrupt(eb, name, "empty");
    memcpy(dst, json_string_value(v), n + 1); /* no NUL inside: the parser refuses \u0000 */
    return 0;
}

static int get_number(json_t *o, const char *key, const char *name, double *dst, imgcls_errbuf *eb)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return corrupt(eb, name, "missing");
    if (!json_is_number(v))
        return corrupt(eb, name, "not a number");
    *dst = json_number_value(v);
    return 0;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes canonical, padded base64 with no whitespace into a fresh *img of exactly *img_len bytes. */
static int decode_b64(const char *s, size_t n, unsigned char **img, size_t *img_len, imgcls_errbuf *eb)
{
    if (n == 0 || n % 4 != 0)
        return corrupt(eb, "image_b64", "length is not a positive multiple of 4");
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < n - pad; i++)
        if (b64_value(s[i]) < 0)
            return imgcls_fail(eb, IMGCLS_ECORRUPT, "message: image_b64: bad character at %zu", i);
    /* The bits after the last full byte must be zero, so that each image has one encoding. */
    if ((pad == 2 && (b64_value(s[n - 3]) & 0x0f)) || (pad == 1 && (b64_value(s[n - 2]) & 0x03)))
        return corrupt(eb, "image_b64", "non-canonical padding");
    size_t full = n / 4 * 3, len = full - pad;
    if (len > MESSAGE_INLINE_MAX)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "message: image_b64: image over %zu bytes", MESSAGE_INLINE_MAX);
    int rc = 0;
    unsigned char *p = malloc(full + 1);
    if (!p)
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "message: out of memory");
    else if (EVP_DecodeBlock(p, (const unsigned char *)s, (int)n) != (int)full)
        rc = corrupt(eb, "image_b64", "not base64"); /* its length counts the padding as zero bytes */
    if (!rc) {
        *img = p;
        *img_len = len;
        p = NULL;
    }
    free(p);
    return rc;
}

static int decode_image(json_t *root, msg_request *out, imgcls_errbuf *eb)
{
    json_t *b64 = json_object_get(root, "image_b64");
    json_t *key = json_object_get(root, "image_key");
    if ((b64 != NULL) == (key != NULL))
        return corrupt(eb, "image_b64/image_key", "exactly one is required");
    if (key)
        return get_str(root, "image_key", "image_key", out->image_key, sizeof out->image_key, 1, eb);
    if (!json_is_string(b64))
        return corrupt(eb, "image_b64", "not a string");
    return decode_b64(json_string_value(b64), json_string_length(b64), &out->image, &out->image_len, eb);
}

int msg_request_decode(const unsigned char *data, size_t len, msg_request *out, imgcls_errbuf *eb)
{
    json_t *root = NULL;
    memset(out, 0, sizeof *out);
    int rc = load(data, len, &root, eb);
    if (!rc)
        rc = get_str(root, "id", "id", out->id, sizeof out->id, 1, eb);
    if (!rc)
        rc = get_str(root, "file", "file", out->file, sizeof out->file, 1, eb);
    if (!rc)
        rc = get_str(root, "reply_to", "reply_to", out->reply_to, sizeof out->reply_to, 1, eb);
    if (!rc)
        rc = decode_image(root, out, eb);
    const char *why = rc ? NULL : request_problem(out);
    if (why)
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "message: %s", why);
    json_decref(root);
    if (rc) {
        msg_request_free(out);
        memset(out, 0, sizeof *out); /* the contract: zeroed on failure, not half-filled */
    }
    return rc;
}

/* Reads {label, index, prob} from o; prefix names o in errors ("top[2]" or "" for the top level). */
static int decode_class(json_t *o, const char *prefix, msg_class *c, imgcls_errbuf *eb)
{
    char name[32];
    if (!json_is_object(o))
        return corrupt(eb, prefix, "not an object");
    snprintf(name, sizeof name, "%s%slabel", prefix, prefix[0] ? "." : "");
    int rc = get_str(o, "label", name, c->label, sizeof c->label, 1, eb);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "%s%sindex", prefix, prefix[0] ? "." : "");
    json_t *idx = json_object_get(o, "index");
    if (!idx)
        return corrupt(eb, name, "missing");
    if (!json_is_integer(idx) || json_integer_value(idx) < 0 || json_integer_value(idx) > UINT32_MAX)
        return corrupt(eb, name, "not an integer in [0, 2^32)");
    c->index = (uint32_t)json_integer_value(idx);
    snprintf(name, sizeof name, "%s%sprob", prefix, prefix[0] ? "." : "");
    return get_number(o, "prob", name, &c->prob, eb);
}

static int decode_result(json_t *root, msg_response *out, imgcls_errbuf *eb)
{
    msg_class head;
    json_t *top = json_object_get(root, "top");
    int rc = decode_class(root, "", &head, eb);
    if (rc)
        return rc;
    if (!json_is_array(top))
        return corrupt(eb, "top", top ? "not an array" : "missing");
    if (json_array_size(top) < 1 || json_array_size(top) > MESSAGE_MAX_TOP)
        return corrupt(eb, "top", "needs 1 to 10 entries");
    out->ntop = json_array_size(top);
    for (size_t i = 0; i < out->ntop && !rc; i++) {
        char name[32];
        snprintf(name, sizeof name, "top[%zu]", i);
        rc = decode_class(json_array_get(top, i), name, &out->top[i], eb);
    }
    if (rc)
        return rc;
    if (strcmp(head.label, out->top[0].label) != 0 || head.index != out->top[0].index)
        return corrupt(eb, "label", "differs from top[0]");
    rc = get_str(root, "worker", "worker", out->worker, sizeof out->worker, 0, eb);
    if (!rc && json_object_get(root, "engine")) /* optional: workers before it did not send it */
        rc = get_str(root, "engine", "engine", out->engine, sizeof out->engine, 1, eb);
    json_t *ms = json_object_get(root, "ms");
    if (!rc && !json_is_object(ms))
        return corrupt(eb, "ms", ms ? "not an object" : "missing");
    msg_timing *t = &out->ms;
    if (!rc)
        rc = get_number(ms, "queue", "ms.queue", &t->queue_ms, eb);
    if (!rc)
        rc = get_number(ms, "fetch", "ms.fetch", &t->fetch_ms, eb);
    if (!rc)
        rc = get_number(ms, "decode", "ms.decode", &t->decode_ms, eb);
    if (!rc)
        rc = get_number(ms, "infer", "ms.infer", &t->infer_ms, eb);
    if (!rc)
        rc = get_number(ms, "total", "ms.total", &t->total_ms, eb);
    return rc;
}

static int decode_error(json_t *e, msg_response *out, imgcls_errbuf *eb)
{
    if (!json_is_object(e))
        return corrupt(eb, "error", "not an object");
    int rc = get_str(e, "code", "error.code", out->error_code, sizeof out->error_code, 1, eb);
    if (!rc)
        rc = get_str(e, "message", "error.message", out->error_message, sizeof out->error_message, 0, eb);
    return rc;
}

int msg_response_decode(const unsigned char *data, size_t len, msg_response *out, imgcls_errbuf *eb)
{
    json_t *root = NULL;
    memset(out, 0, sizeof *out);
    int rc = load(data, len, &root, eb);
    if (!rc)
        rc = get_str(root, "id", "id", out->id, sizeof out->id, 1, eb);
    if (!rc)
        rc = get_str(root, "file", "file", out->file, sizeof out->file, 0, eb);
    json_t *e = rc ? NULL : json_object_get(root, "error");
    if (!rc && e && json_object_get(root, "label"))
        rc = corrupt(eb, "error", "a response has an error or a label, not both");
    if (!rc)
        rc = e ? decode_error(e, out, eb) : decode_result(root, out, eb);
    const char *why = rc ? NULL : response_problem(out);
    if (why)
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "message: %s", why);
    json_decref(root);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}

void msg_request_free(msg_request *r)
{
    if (!r)
        return;
    free(r->image);
    r->image = NULL;
    r->image_len = 0;
}
