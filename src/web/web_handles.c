/* The pool of backend handles (why a pool: web_handles.h). */
#include "web/web_handles.h"

#include <pthread.h>
#include <stdlib.h>

struct web_handle_pool {
    pthread_mutex_t mu;
    pthread_cond_t freed;
    web_handles *free_list;
    web_handles *sets;
    size_t n;
};

static int open_set(web_handles *h, const char *queue_url, const char *in_url, const char *out_url,
                    imgcls_errbuf *eb)
{
    int rc = queue_open(queue_url, &h->requests, eb);
    if (!rc)
        rc = store_open(in_url, &h->in, eb);
    if (!rc)
        rc = store_open(out_url, &h->out, eb);
    return rc;
}

int web_handles_open(size_t n, const char *queue_url, const char *in_url, const char *out_url,
                     web_handle_pool **out, imgcls_errbuf *eb)
{
    int rc = 0;
    *out = NULL;
    web_handle_pool *p = calloc(1, sizeof *p);
    if (!p)
        return IMGCLS_ENOMEM;
    p->sets = calloc(n ? n : 1, sizeof *p->sets);
    if (!p->sets || pthread_mutex_init(&p->mu, NULL)) {
        free(p->sets);
        free(p);
        return IMGCLS_ENOMEM;
    }
    pthread_cond_init(&p->freed, NULL);
    p->n = n;
    for (size_t i = 0; i < n; i++) {
        rc = open_set(&p->sets[i], queue_url, in_url, out_url, eb);
        if (rc)
            goto out;
        p->sets[i].next_free = p->free_list;
        p->free_list = &p->sets[i];
    }
    *out = p;
    p = NULL;
out:
    web_handles_close(p);
    return rc;
}

void web_handles_close(web_handle_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        queue_close(p->sets[i].requests);
        store_close(p->sets[i].in);
        store_close(p->sets[i].out);
    }
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->mu);
    free(p->sets);
    free(p);
}

web_handles *web_handles_take(web_handle_pool *p)
{
    pthread_mutex_lock(&p->mu);
    while (!p->free_list)
        pthread_cond_wait(&p->freed, &p->mu);
    web_handles *h = p->free_list;
    p->free_list = h->next_free;
    pthread_mutex_unlock(&p->mu);
    return h;
}

void web_handles_give(web_handle_pool *p, web_handles *h)
{
    pthread_mutex_lock(&p->mu);
    h->next_free = p->free_list;
    p->free_list = h;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->mu);
}
