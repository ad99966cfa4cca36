/* libxml2 behind aws_xml.h. */
#include "aws/aws_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <limits.h>
#include <string.h>

/* libxml2 reports errors through a callback that defaults to printing on stderr; a bad answer from AWS
 * is reported once, through eb, instead. */
static void quiet(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

aws_xml_doc *aws_xml_parse(const void *text, size_t len, imgcls_errbuf *eb)
{
    if (len == 0 || len > INT_MAX) {
        imgcls_fail(eb, IMGCLS_ECORRUPT, "xml: empty or oversized document");
        return NULL;
    }
    xmlSetGenericErrorFunc(NULL, quiet);
    /* No XML_PARSE_NOENT (no entity substitution), no XML_PARSE_DTDLOAD: nothing is fetched or expanded. */
    xmlDoc *d = xmlReadMemory(text, (int)len, "aws.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR |
                                                                  XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
    if (!d || !xmlDocGetRootElement(d)) {
        const xmlError *e = xmlGetLastError();
        imgcls_fail(eb, IMGCLS_ECORRUPT, "xml: not well-formed (line %d)", e ? e->line : 0);
        xmlFreeDoc(d);
        return NULL;
    }
    return d;
}

void aws_xml_free(aws_xml_doc *d)
{
    if (d)
        xmlFreeDoc(d);
}

const aws_xml_node *aws_xml_root(const aws_xml_doc *d)
{
    return xmlDocGetRootElement(d);
}

static int named(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && n->name && strcmp((const char *)n->name, name) == 0;
}

const aws_xml_node *aws_xml_child(const aws_xml_node *parent, const char *name)
{
    for (const xmlNode *c = parent ? parent->children : NULL; c; c = c->next)
        if (named(c, name))
            return c;
    return NULL;
}

const aws_xml_node *aws_xml_next(const aws_xml_node *n)
{
    for (const xmlNode *c = n ? n->next : NULL; c; c = c->next)
        if (named(c, (const char *)n->name))
            return c;
    return NULL;
}

const aws_xml_node *aws_xml_find(const aws_xml_node *n, const char *name)
{
    /* Iterative walk: a hostile document's depth must not become our stack's. */
    const xmlNode *c = n ? n->children : NULL;
    while (c) {
        if (named(c, name))
            return c;
        if (c->children && c->type == XML_ELEMENT_NODE) {
            c = c->children;
            continue;
        }
        while (c && !c->next && c->parent != n)
            c = c->parent;
        c = c ? (c->parent == n && !c->next ? NULL : c->next) : NULL;
    }
    return NULL;
}

int aws_xml_text(const aws_xml_node *parent, const char *name, char *out, size_t outsz)
{
    const xmlNode *c = aws_xml_child(parent, name);
    if (!c)
        return IMGCLS_ENOTFOUND;
    xmlChar *t = xmlNodeGetContent(c);
    size_t n = t ? strlen((const char *)t) : 0;
    int rc = n < outsz ? 0 : IMGCLS_ETOOBIG;
    if (!rc) {
        memcpy(out, t ? (const char *)t : "", n);
        out[n] = 0;
    }
    xmlFree(t);
    return rc;
}
