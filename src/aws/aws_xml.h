/* The XML of AWS's query and REST protocols (Auto Scaling, S3 errors), read with libxml2.
 *
 * Answers are outside input: the parser never loads a network resource or a DTD, never substitutes
 * entities, and is handed at most what aws_call let through (its max_response). Elements are found by
 * local name, so the namespaces AWS declares do not matter. */
#ifndef IMGCLS_AWS_AWS_XML_H
#define IMGCLS_AWS_AWS_XML_H

#include "common/error.h"

#include <stddef.h>

typedef struct _xmlDoc aws_xml_doc;
typedef struct _xmlNode aws_xml_node;

/* NULL when text is not well-formed XML (eb says where). Free with aws_xml_free. */
aws_xml_doc *aws_xml_parse(const void *text, size_t len, imgcls_errbuf *eb);
void aws_xml_free(aws_xml_doc *d); /* accepts NULL */
const aws_xml_node *aws_xml_root(const aws_xml_doc *d);
/* The first element child of parent named name, or NULL. */
const aws_xml_node *aws_xml_child(const aws_xml_node *parent, const char *name);
/* The next sibling element after n with the same name, or NULL (iterates <member> lists). */
const aws_xml_node *aws_xml_next(const aws_xml_node *n);
/* The first element named name anywhere below n (depth first), or NULL. */
const aws_xml_node *aws_xml_find(const aws_xml_node *n, const char *name);
/* Copies the text of child `name` of parent into out. 0, IMGCLS_ENOTFOUND when there is no such child,
 * IMGCLS_ETOOBIG when it does not fit. */
int aws_xml_text(const aws_xml_node *parent, const char *name, char *out, size_t outsz);

#endif
