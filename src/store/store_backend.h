/* The backends the store registry knows (private to src/store/). A new backend adds its ops table here
 * and to the table in store.c. */
#ifndef IMGCLS_STORE_STORE_BACKEND_H
#define IMGCLS_STORE_STORE_BACKEND_H

#include "store/store.h"

extern const struct store_ops store_file_ops;
extern const struct store_ops store_fault_ops;
extern const struct store_ops store_s3_ops;

#endif
