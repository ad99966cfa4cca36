/* CloudWatch PutMetricData (contract in aws.h), in CloudWatch's JSON protocol, as SQS is: one
 * encoder (jansson) for both, and no XML answer to parse on success. */
#include "aws/aws.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int aws_cloudwatch_put(aws_client *c, const char *ns, const char *dim_name, const char *dim_value,
                       const aws_metric *metrics, size_t n, imgcls_errbuf *eb)
{
    json_t *data = json_array();
    for (size_t i = 0; data && i < n; i++) {
        json_t *m = json_pack("{s:s, s:f, s:s}", "MetricName", metrics[i].name, "Value", metrics[i].value, "Unit",
                              metrics[i].unit ? metrics[i].unit : "None");
        if (m && dim_name && dim_value)
            json_object_set_new(m, "Dimensions", json_pack("[{s:s, s:s}]", "Name", dim_name, "Value", dim_value));
        if (!m || json_array_append_new(data, m)) {
            json_decref(data);
            data = NULL;
        }
    }
    json_t *doc = data ? json_pack("{s:s, s:o}", "Namespace", ns, "MetricData", data) : NULL;
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!body)
        return imgcls_fail(eb, IMGCLS_ENOMEM, "cloudwatch: cannot encode PutMetricData");
    aws_response resp;
    int rc = aws_call(c, &(aws_request){.op = "PutMetricData", .method = "POST", .body = body, .len = strlen(body),
                                        .content_type = "application/x-amz-json-1.0",
                                        .target = "GraniteServiceVersion20100801.PutMetricData"},
                      &resp);
    if (rc)
        imgcls_fail(eb, rc, "%s", aws_client_error(c));
    aws_response_free(&resp);
    free(body);
    return rc;
}
