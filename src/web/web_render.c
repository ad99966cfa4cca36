/* Ids and answer bodies (contract in web_render.h). */
#include "web/web_render.h"

#include "common/json_buf.h"

#include "common/error.h"

#include <jansson.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

/* The JSON form lists the top 5, as the assignment's clients expect, whatever the worker sent. */
#define WEB_JSON_TOP 5
/* Significant digits of numbers in JSON answers: enough for a probability or a time in ms, without
 * the binary noise of 17 digits ("0.10000000000000001"). */
#define WEB_JSON_DIGITS 6

int web_id_new(char out[WEB_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[WEB_ID_LEN / 2];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return IMGCLS_EIO;
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof rnd; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[WEB_ID_LEN] = 0;
    return 0;
}

/* A media range in Accept is "type/subtype;params", separated by commas. Only an explicit
 * application/json selects JSON: "*" wildcards, which requests and curl send, keep the assignment's
 * text answer. */
bool web_accepts_json(const char *accept)
{
    const char *p = accept;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",;");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == strlen("application/json") && strncasecmp(p, "application/json", n) == 0)
            return true;
        p = strchr(p, ',');
    }
    return false;
}

unsigned web_status_for_error(const char *code)
{
    if (strcmp(code, "EFORMAT") == 0)
        return 422;
    if (strcmp(code, "ETOOBIG") == 0)
        return 413;
    if (strcmp(code, "EUNSUPPORTED") == 0)
        return 415;
    return 500;
}

static int dump_json(json_t *o, imgcls_buf *out)
{
    int rc = o ? json_buf_dump(o, JSON_REAL_PRECISION(WEB_JSON_DIGITS), out) : IMGCLS_ENOMEM;
    json_decref(o);
    return rc;
}

static json_t *stages_json(const msg_response *r, const web_stage_ms *web)
{
    const msg_timing *t = &r->ms;
    json_t *ms = json_pack("{s:f, s:f, s:f, s:f, s:f}", "queue", t->queue_ms, "fetch", t->fetch_ms, "decode",
                           t->decode_ms, "infer", t->infer_ms, "worker", t->total_ms);
    if (ms && web) {
        json_t *w = json_pack("{s:f, s:f, s:f, s:f, s:f}", "receive", web->receive, "store", web->store,
                              "send", web->send, "wait", web->wait, "total", web->total);
        if (!w || json_object_update(ms, w)) {
            json_decref(ms);
            ms = NULL;
        }
        json_decref(w);
    }
    return ms;
}

static int render_result_json(const msg_response *r, const web_stage_ms *web, imgcls_buf *out)
{
    json_t *top = json_array();
    for (size_t i = 0; top && i < r->ntop && i < WEB_JSON_TOP; i++)
        if (json_array_append_new(top, json_pack("{s:s, s:I, s:f}", "label", r->top[i].label, "index",
                                                 (json_int_t)r->top[i].index, "prob", r->top[i].prob))) {
            json_decref(top);
            top = NULL;
        }
    json_t *ms = stages_json(r, web);
    /* "o" steals top and ms, also when the pack fails, so nothing leaks on that path. */
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:f, s:o*, s:s, s:o*}", "id", r->id, "file", r->file, "label",
                          r->top[0].label, "index", (json_int_t)r->top[0].index, "prob", r->top[0].prob,
                          "top", top, "worker", r->worker, "ms", ms);
    return dump_json(o, out);
}

int web_render_response(const msg_response *r, const web_stage_ms *web, bool json, imgcls_buf *out,
                        unsigned *status)
{
    if (r->error_code[0]) {
        *status = web_status_for_error(r->error_code);
        const char *msg = r->error_message[0] ? r->error_message : "the worker could not classify the image";
        return web_render_error(*status, r->error_code, r->id, msg, json, out);
    }
    *status = 200;
    if (r->ntop == 0) {
        *status = 500;
        return web_render_error(*status, "ECORRUPT", r->id, "the worker's answer has no label", json, out);
    }
    if (!json)
        return buf_append(out, r->top[0].label, strlen(r->top[0].label));
    return render_result_json(r, web, out);
}

int web_render_error(unsigned status, const char *code, const char *id, const char *message, bool json,
                     imgcls_buf *out)
{
    if (!json)
        return buf_printf(out, "%s\n", message);
    json_t *o = json_pack("{s:{s:s, s:s}, s:I}", "error", "code", code, "message", message, "status",
                          (json_int_t)status);
    if (o && id && json_object_set_new(o, "id", json_string(id))) {
        json_decref(o);
        o = NULL;
    }
    return dump_json(o, out);
}
